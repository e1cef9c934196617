"""dlib backend: HOG detector, 68-point landmarks, 128-d ResNet embedder (models from PyPI).

The model files come from the ``face_recognition_models`` package and are loaded straight into
dlib: the ``face_recognition`` package itself is never imported, because with setuptools ≥ 82 its
import *exits the process* (its ``pkg_resources`` fallback calls ``quit()``).
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import dlib  # type: ignore[import-untyped]
import numpy as np

from verification.align import landmarks5_from_68
from verification.errors import ModelLoadError
from verification.types import Box, Face, Image, ModelInfo, Points, Vector

logger = logging.getLogger(__name__)

LANDMARKS_68 = "shape_predictor_68_face_landmarks.dat"
LANDMARKS_5 = "shape_predictor_5_face_landmarks.dat"
RESNET = "dlib_face_recognition_resnet_model_v1.dat"
_LOCATORS = {
    LANDMARKS_68: "pose_predictor_model_location",
    LANDMARKS_5: "pose_predictor_five_point_model_location",
    RESNET: "face_recognition_model_location",
}


def _package_models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("face_recognition_models", "package not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def dlib_model_path(name: str) -> Path:
    """Path of a ``face_recognition_models`` file; ``ModelLoadError`` (naming it) if missing.

    Uses the package's ``*_location()`` function; if the package cannot be imported (no
    ``pkg_resources``), the file is looked up in the package folder instead.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import face_recognition_models  # type: ignore[import-untyped]

        path = Path(getattr(face_recognition_models, _LOCATORS[name])())
    except ImportError as err:
        logger.warning("face_recognition_models not importable (%s); using its folder", err)
        path = _package_models_dir() / name
    if not path.is_file():
        raise ModelLoadError(path, "face_recognition_models file not found")
    return path


def _models_version() -> str:
    try:
        return metadata.version("face_recognition_models")
    except metadata.PackageNotFoundError:
        return "unknown"


def _load(factory: Any, name: str) -> Any:
    path = dlib_model_path(name)
    try:
        return factory(str(path))
    except RuntimeError as err:
        raise ModelLoadError(path, str(err)) from err


def _rect(box: Box) -> Any:
    left, top = round(box.x), round(box.y)
    return dlib.rectangle(left, top, left + max(1, round(box.w)), top + max(1, round(box.h)))


def _points(shape: Any) -> Points:
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def _contiguous(image: Image) -> Image:
    return np.ascontiguousarray(image, dtype=np.uint8)


class DlibLandmarks:
    """68 landmarks (iBUG order) by dlib's shape predictor from ``face_recognition_models``."""

    def __init__(self) -> None:
        self._predictor = _load(dlib.shape_predictor, LANDMARKS_68)
        self.info = ModelInfo("dlib", "shape_predictor_68_face_landmarks", _models_version())

    def landmarks68(self, image: Image, box: Box) -> Points:
        """The 68 points of the face in ``box``."""
        return _points(self._predictor(_contiguous(image), _rect(box)))


class DlibDetector:
    """dlib's HOG frontal-face detector; 5 points come from the 68-point predictor.

    ``upsample=0`` finds faces of about 80 px and up (≈ 50 ms at 640×480 on one core);
    ``upsample=1`` finds faces from about 40 px at four times the cost.
    """

    def __init__(self, upsample: int = 0, landmarks: DlibLandmarks | None = None) -> None:
        if upsample not in (0, 1, 2):
            raise ValueError(f"upsample must be 0, 1 or 2, got {upsample}")
        self.upsample = upsample
        self._hog = dlib.get_frontal_face_detector()
        self._landmarks = landmarks or DlibLandmarks()
        self.info = ModelInfo("dlib", f"hog_frontal_face_up{upsample}", dlib.__version__)

    def detect(self, image: Image) -> list[Face]:
        """Every face in ``image``, most confident first, with 68 and 5 landmarks."""
        pixels = _contiguous(image)
        rects, scores, _ = self._hog.run(pixels, self.upsample, 0.0)
        faces = []
        for rect, score in sorted(zip(rects, scores, strict=True), key=lambda rs: -rs[1]):
            box = Box(rect.left(), rect.top(), rect.width(), rect.height(), float(score))
            points = self._landmarks.landmarks68(pixels, box)
            faces.append(Face(box, landmarks5_from_68(points), points))
        return faces


class DlibEmbedder:
    """dlib's 128-d ResNet descriptor on its 5-point-aligned 150×150 chip.

    The vector is dlib's **raw** descriptor (norm ≈ 1.4, not L2-normalised) because dlib's
    thresholds are defined on raw euclidean distances: ``similarity = 1 - distance``, so dlib's
    default tolerance 0.6 is similarity 0.4.
    """

    def __init__(self, num_jitters: int = 1) -> None:
        self.num_jitters = num_jitters
        self._shape5 = _load(dlib.shape_predictor, LANDMARKS_5)
        self._resnet = _load(dlib.face_recognition_model_v1, RESNET)
        self.info = ModelInfo("dlib", "dlib_face_recognition_resnet_model_v1", _models_version())

    def embed(self, image: Image, face: Face) -> Vector:
        """The 128-d descriptor of ``face``."""
        pixels = _contiguous(image)
        shape = self._shape5(pixels, _rect(face.box))
        vector = self._resnet.compute_face_descriptor(pixels, shape, self.num_jitters)
        return np.asarray(vector, dtype=np.float32)

    def similarity(self, a: Vector, b: Vector) -> float:
        """``1 - euclidean distance`` (dlib's same-person tolerance 0.6 ↔ 0.4)."""
        return 1.0 - float(np.linalg.norm(a.astype(np.float64) - b.astype(np.float64)))
