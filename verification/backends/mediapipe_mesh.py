"""MediaPipe FaceMesh landmarks (468 + 10 iris points), mapped to the 68-point iBUG order.

The model files ship inside the ``mediapipe==0.10.14`` wheel (Apache-2.0; 1.x downloads them at
run time, which fails offline), so this backend needs nothing but PyPI. Measured on every clip
of ``liveness_video`` (``bench/eval_actions.py``): its eyelids close fully in a blink (EAR falls
to 0.1–0.2 of the open eye where dlib's 68-point predictor stops at 0.5–0.6), and its yaw
follows head turns that dlib misses when the face also laughs or talks (d12).

The mesh runs on a crop around the detector's box ("static image" mode: no state between calls,
so any worker can serve any stream), and the face nearest the box's centre is kept. A crop in
which the mesh finds no face gives ``None``: that frame's face cannot be measured.
"""

from __future__ import annotations

import logging
import threading
import warnings
from importlib import metadata
from typing import Any

import numpy as np

from verification.errors import ModelLoadError
from verification.types import Box, Image, ModelInfo, Points

logger = logging.getLogger(__name__)

# FaceMesh index of each iBUG-300W point (jaw 0–16, brows 17–26, nose 27–35, eyes 36–47, outer
# lips 48–59, inner lips 60–67); "left" and "right" are the image's, as in dlib's order.
MESH_TO_68: tuple[int, ...] = (
    *(127, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 356),
    *(70, 63, 105, 66, 107, 336, 296, 334, 293, 300),
    *(168, 197, 5, 4, 75, 97, 2, 326, 305),
    *(33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380),
    *(61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181),
    *(78, 82, 13, 312, 308, 317, 14, 87),
)
CROP_GROW = 0.5  # the crop is the box grown by this much of its size on each side
VERSION = "0.10.14"


def _crop(image: Image, box: Box) -> tuple[Image, int, int]:
    height, width = image.shape[:2]
    left, top = max(0, int(box.x - CROP_GROW * box.w)), max(0, int(box.y - CROP_GROW * box.h))
    right = min(width, int(box.x + box.w * (1 + CROP_GROW)))
    bottom = min(height, int(box.y + box.h * (1 + CROP_GROW)))
    return np.ascontiguousarray(image[top:bottom, left:right]), left, top


def _load_mesh() -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # protobuf deprecation notices at import
            import mediapipe as mp  # type: ignore[import-untyped]
    except ImportError as err:
        raise ModelLoadError("mediapipe", f"package not importable: {err}") from err
    installed = metadata.version("mediapipe")
    if installed != VERSION:
        raise ModelLoadError("mediapipe", f"version {installed} installed, {VERSION} required")
    try:
        return mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=2,
            refine_landmarks=True,
            min_detection_confidence=0.3,
        )
    except (RuntimeError, ValueError) as err:
        raise ModelLoadError("mediapipe face_mesh", str(err)) from err


class MeshLandmarks:
    """68 landmarks (iBUG order) from MediaPipe FaceMesh on a crop around the face box."""

    def __init__(self) -> None:
        self._mesh = _load_mesh()
        self._lock = threading.Lock()  # one graph; calls from several threads take turns
        self.info = ModelInfo("mediapipe", "face_mesh_refined_68", VERSION)

    def mesh(self, image: Image, box: Box) -> Points | None:
        """All 478 mesh points (x, y in pixels of ``image``) of the face in ``box``, or None."""
        crop, left, top = _crop(image, box)
        if crop.shape[0] < 16 or crop.shape[1] < 16:
            return None
        with self._lock, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = self._mesh.process(crop).multi_face_landmarks
        if not found:
            return None
        height, width = crop.shape[:2]
        centre = np.array(box.center, dtype=np.float32)
        best: Points | None = None
        best_distance = float("inf")
        for face in found:
            points = np.array(
                [(p.x * width + left, p.y * height + top) for p in face.landmark],
                dtype=np.float32,
            )
            distance = float(np.hypot(*(points.mean(axis=0) - centre)))
            if distance < best_distance:
                best, best_distance = points, distance
        return best

    def landmarks68(self, image: Image, box: Box) -> Points | None:
        """The 68 points of the face in ``box``, or None when the mesh finds no face there."""
        points = self.mesh(image, box)
        return None if points is None else np.ascontiguousarray(points[list(MESH_TO_68)])
