"""Fixtures of the face-engine tests: real photos, clips and models from ``../shared``.

Paths come from ``CLOUDBRANCH_SHARED_DATA`` / ``CLOUDBRANCH_SHARED_MODELS`` (defaults: the
``shared`` folder next to the repository). Missing data fails the tests; it never skips them.
Engines load their models once per session.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from verification.config import build_engine
from verification.engine import FaceEngine, decode_image
from verification.types import Image

REPO = Path(__file__).resolve().parents[2]


def shared_models_dir() -> Path:
    """``../shared/models`` (or ``CLOUDBRANCH_SHARED_MODELS``); a missing folder fails loudly."""
    path = Path(os.environ.get("CLOUDBRANCH_SHARED_MODELS", REPO.parent / "shared" / "models"))
    if not (path / "face_detect_yunet").is_dir():
        pytest.fail(f"shared models not found at {path} (set CLOUDBRANCH_SHARED_MODELS)")
    return path


def require(path: Path) -> Path:
    """``path`` if it exists; otherwise the test fails, naming it."""
    if not path.exists():
        pytest.fail(f"real test data missing: {path}")
    return path


def read_clip(path: Path, start: int = 0, count: int = 10_000) -> list[Image]:
    """RGB frames ``start`` … ``start + count - 1`` of a real clip."""
    capture = cv2.VideoCapture(str(require(path)))
    frames: list[Image] = []
    try:
        index = 0
        while len(frames) < count:
            ok, frame = capture.read()
            if not ok:
                break
            if index >= start:
                frames.append(np.asarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))
            index += 1
    finally:
        capture.release()
    if not frames:
        pytest.fail(f"no frames read from {path}")
    return frames


def to_640x480(frame: Image) -> Image:
    """A frame letterboxed (scaled, then padded with black) to 640×480, as a webcam delivers."""
    height, width = frame.shape[:2]
    factor = min(640 / width, 480 / height)
    resized = cv2.resize(frame, (round(width * factor), round(height * factor)))
    canvas = np.zeros((480, 640, 3), dtype=np.uint8)
    top, left = (480 - resized.shape[0]) // 2, (640 - resized.shape[1]) // 2
    canvas[top : top + resized.shape[0], left : left + resized.shape[1]] = resized
    return canvas


@pytest.fixture(scope="session")
def data_dir(shared_data: Path) -> Path:
    """``shared/data``."""
    return shared_data


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """``shared/models``."""
    return shared_models_dir()


@pytest.fixture(scope="session")
def photo(data_dir: Path) -> Callable[[str], Image]:
    """Loads a photo as RGB, EXIF-upright: ``obama/obama.jpg`` (under
    ``identity/face_recognition``) or a path under data such as ``presentation_attack/...``."""

    def load(name: str) -> Image:
        folder = data_dir / "identity" / "face_recognition"
        path = data_dir / name if (data_dir / name).exists() else folder / name
        return decode_image(require(path).read_bytes())

    return load


@pytest.fixture(scope="session")
def dlib_engine() -> FaceEngine:
    """The default engine (dlib models from PyPI, no PAD)."""
    return build_engine("dlib")


@pytest.fixture(scope="session")
def onnx_engine(models_dir: Path) -> FaceEngine:
    """YuNet + MobileFaceNet + MiniFASNet from the shared models."""
    return build_engine("onnx", models_dir)
