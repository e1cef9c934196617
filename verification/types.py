"""Values and seams of the face engine: frozen dataclasses and Protocols over numpy arrays.

Conventions, for every backend:
* Images are ``np.ndarray`` uint8, shape (H, W, 3), **RGB** (backends built on OpenCV convert
  internally). Coordinates are pixels of the image passed in, x to the right, y down.
* ``Face.landmarks5`` is float32 (5, 2) in the ArcFace order: the eye on the image's left, the
  eye on the image's right, nose tip, the mouth corner on the image's left, the one on the right.
* 68-point landmarks are float32 (68, 2) in the iBUG-300W / dlib order (jaw 0–16, brows 17–26,
  nose 27–35, eyes 36–47, mouth 48–67).
* Embeddings are float32 1-D and L2-normalised; ``FaceEmbedder.similarity`` is higher for the
  same person. Thresholds belong to one backend+version (``ModelInfo.key``). Exceptions, so that
  published thresholds keep their meaning: ``DlibEmbedder`` returns dlib's raw descriptor
  (norm ≈ 1.4; similarity = 1 − euclidean distance) and ``FusedEmbedder`` the concatenation of
  its members' vectors. Compare vectors only through ``similarity``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]
Points = npt.NDArray[np.float32]
Vector = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """Which model made a result; stored with templates and evidence."""

    backend: str  # e.g. "dlib", "yunet", "onnx-arcface", "minifasnet"
    model: str  # file name or package model name
    version: str  # package version or the model file's sha256 prefix

    @property
    def key(self) -> str:
        """Stable identifier, e.g. ``dlib/dlib_face_recognition_resnet_model_v1@20.0.1``."""
        return f"{self.backend}/{self.model}@{self.version}"


@dataclass(frozen=True, slots=True)
class Box:
    """A face box in pixels with the detector's confidence."""

    x: float
    y: float
    w: float
    h: float
    score: float = 1.0

    def __post_init__(self) -> None:
        if self.w <= 0 or self.h <= 0:
            raise ValueError(f"box must have a positive size, got {self.w}×{self.h}")

    @property
    def center(self) -> tuple[float, float]:
        """Centre point."""
        return (self.x + self.w / 2, self.y + self.h / 2)

    def scaled(self, factor: float) -> Box:
        """The box in an image ``factor`` times larger."""
        return Box(self.x * factor, self.y * factor, self.w * factor, self.h * factor, self.score)


@dataclass(frozen=True, slots=True)
class Face:
    """One detected face."""

    box: Box
    landmarks5: Points = field(repr=False)
    landmarks68: Points | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.landmarks5.shape != (5, 2):
            raise ValueError(f"landmarks5 must be (5, 2), got {self.landmarks5.shape}")
        if self.landmarks68 is not None and self.landmarks68.shape != (68, 2):
            raise ValueError(f"landmarks68 must be (68, 2), got {self.landmarks68.shape}")


class FaceDetector(Protocol):
    """Finds faces (box + 5 landmarks)."""

    info: ModelInfo

    def detect(self, image: Image) -> list[Face]:
        """Every face in ``image``, most confident first."""
        ...


class LandmarkModel(Protocol):
    """68 landmarks for a face box (liveness needs eyes, mouth and pose)."""

    info: ModelInfo

    def landmarks68(self, image: Image, box: Box) -> Points | None:
        """The 68 points of the face in ``box``; None when the model finds no face there."""
        ...


class FaceEmbedder(Protocol):
    """Turns a face into an identity vector."""

    info: ModelInfo

    def embed(self, image: Image, face: Face) -> Vector:
        """L2-normalised embedding of ``face`` in ``image``."""
        ...

    def similarity(self, a: Vector, b: Vector) -> float:
        """Higher for the same person (the backend's own scale)."""
        ...


class PadModel(Protocol):
    """Presentation-attack detection on one frame."""

    info: ModelInfo

    def live_score(self, image: Image, face: Face) -> float:
        """Probability-like score in [0, 1] that the face is a live person, not a print/screen."""
        ...
