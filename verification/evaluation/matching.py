"""Face-match evaluation on a labelled pair list (e.g. ``identity/lfw_subset/pairs.csv``).

Each image is detected and embedded once (cached per image and per configuration). The face
used is the detected face nearest to the image centre (LFW images are centred on the labelled
person; other people may appear at the edges). An image in which the detector finds no face is a
*failure to acquire*: its comparisons get the lowest possible score (a non-match), so it counts
against FNMR, never in favour of FMR, and the count is reported.

Flip augmentation embeds the image and its mirror image and averages the two vectors (then
re-normalises them if the embedder's vectors are L2-normalised).
"""

from __future__ import annotations

import csv
import logging
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from verification.backends.flip import FlipEmbedder
from verification.evaluation.metrics import (
    Scores,
    best_accuracy,
    equal_error_rate,
    fnmr_at_fmr,
)
from verification.types import Face, FaceDetector, FaceEmbedder, Image, Vector

logger = logging.getLogger(__name__)

# Lowest similarity any backend here gives (cosine ≥ −1; dlib's 1 − distance ≥ 1 − 2·1.5).
FAILED_SCORE = -10.0


@dataclass(frozen=True, slots=True)
class Pair:
    """One labelled comparison: two image paths (relative to the data folder), same person?"""

    file_a: str
    file_b: str
    genuine: bool

    @property
    def identity_a(self) -> str:
        """The identity of the first image (its folder name)."""
        return Path(self.file_a).parent.name


def load_pairs(path: Path) -> list[Pair]:
    """Rows ``file_a,file_b,same`` of a pairs CSV (``same`` 1 or 0)."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    pairs = []
    for row in rows:
        if row["same"] not in ("0", "1"):
            raise ValueError(f"{path}: 'same' must be 0 or 1, got {row['same']!r}")
        pairs.append(Pair(row["file_a"], row["file_b"], row["same"] == "1"))
    return pairs


def identity_fold(pairs: Sequence[Pair]) -> npt.NDArray[np.int64]:
    """0/1 per pair from a stable hash (CRC-32) of the first image's identity.

    The calibration/test split for score fusion: genuine pairs of one identity are all in one
    fold; an impostor pair's second image may belong to an identity of the other fold.
    """
    return np.array([zlib.crc32(p.identity_a.encode()) % 2 for p in pairs], dtype=np.int64)


def read_rgb(path: Path) -> Image:
    """An image file as RGB uint8 (OpenCV applies EXIF orientation)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read image {path}")
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def central_face(faces: Sequence[Face], width: int, height: int) -> Face | None:
    """The face whose box centre is nearest to the image centre."""
    if not faces:
        return None

    def distance(face: Face) -> float:
        cx, cy = face.box.center
        return float(np.hypot(cx - width / 2, cy - height / 2))

    return min(faces, key=distance)


def embed_face(embedder: FaceEmbedder, image: Image, face: Face, flip: bool) -> Vector:
    """The embedding of ``face``; with ``flip``, the mean with its mirror image's embedding."""
    return (FlipEmbedder(embedder) if flip else embedder).embed(image, face)


def detect_all(
    detector: FaceDetector, images: Iterable[str], load: Callable[[str], Image]
) -> dict[str, Face | None]:
    """The central face of each image (``None``: failure to acquire)."""
    faces: dict[str, Face | None] = {}
    for name in images:
        image = load(name)
        faces[name] = central_face(detector.detect(image), image.shape[1], image.shape[0])
    return faces


def embed_all(
    embedder: FaceEmbedder,
    faces: Mapping[str, Face | None],
    load: Callable[[str], Image],
    flip: bool,
) -> dict[str, Vector | None]:
    """One embedding per image (``None`` where no face was found)."""
    out: dict[str, Vector | None] = {}
    for name, face in faces.items():
        out[name] = None if face is None else embed_face(embedder, load(name), face, flip)
    return out


def pair_scores(
    pairs: Sequence[Pair],
    embeddings: Mapping[str, Vector | None],
    similarity: Callable[[Vector, Vector], float],
) -> Scores:
    """The similarity of each pair (``FAILED_SCORE`` when either image has no embedding)."""
    scores = np.empty(len(pairs), dtype=np.float64)
    for i, pair in enumerate(pairs):
        a, b = embeddings.get(pair.file_a), embeddings.get(pair.file_b)
        scores[i] = FAILED_SCORE if a is None or b is None else similarity(a, b)
    return scores


def summarise(scores: Scores, genuine: npt.NDArray[np.bool_]) -> dict[str, object]:
    """FNMR at FMR 1% and 0.1% (with thresholds), EER and best accuracy, as JSON values."""
    gen, imp = scores[genuine], scores[~genuine]
    eer, eer_threshold = equal_error_rate(gen, imp)
    accuracy, accuracy_threshold = best_accuracy(gen, imp)
    return {
        "genuine_pairs": int(gen.size),
        "impostor_pairs": int(imp.size),
        "at_fmr_1%": fnmr_at_fmr(gen, imp, 0.01).as_dict(),
        "at_fmr_0.1%": fnmr_at_fmr(gen, imp, 0.001).as_dict(),
        "eer": eer,
        "eer_threshold": eer_threshold,
        "best_accuracy": accuracy,
        "best_accuracy_threshold": accuracy_threshold,
    }
