"""5-point face alignment to the standard ArcFace 112×112 template (no scikit-image)."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from verification.types import Image, Points

# Where the eyes, nose tip and mouth corners of an aligned 112×112 ArcFace crop lie (insightface
# ``arcface_dst``), in the image-left-first order of ``Face.landmarks5``.
ARCFACE_TEMPLATE: Points = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)
ARCFACE_SIZE = 112


def similarity_transform(src: Points, dst: Points) -> npt.NDArray[np.float64]:
    """The 2×3 least-squares similarity (rotation, uniform scale, shift) taking ``src`` to ``dst``.

    Umeyama's closed form, the same estimate insightface gets from scikit-image.
    """
    src64 = np.asarray(src, dtype=np.float64)
    dst64 = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src64.mean(axis=0), dst64.mean(axis=0)
    src_c, dst_c = src64 - src_mean, dst64 - dst_mean
    cov = dst_c.T @ src_c / len(src64)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1.0
    rotation = u @ np.diag(d) @ vt
    variance = float((src_c**2).sum() / len(src64))
    scale = float((s * d).sum() / variance) if variance > 0 else 1.0
    shift = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, shift[:, None]])


def align_face(image: Image, landmarks5: Points, size: int = ARCFACE_SIZE) -> Image:
    """The face warped to a ``size``×``size`` crop with its 5 points on the ArcFace template."""
    template = ARCFACE_TEMPLATE * (size / ARCFACE_SIZE)
    matrix = similarity_transform(landmarks5, template)
    warped = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)
    return np.asarray(warped, dtype=np.uint8)


def landmarks5_from_68(points68: Points) -> Points:
    """ArcFace-order 5 points from iBUG-68: eye centres, nose tip, mouth corners (image-left first).

    In the iBUG order points 36–41 are the eye on the image's left (the subject's right eye).
    """
    pts = np.asarray(points68, dtype=np.float32)
    return np.stack(
        [pts[36:42].mean(axis=0), pts[42:48].mean(axis=0), pts[30], pts[48], pts[54]]
    ).astype(np.float32)
