"""ArcFace-style ONNX embedders (112×112 aligned crop → vector) with onnxruntime on the CPU.

Preprocessing is a property of the model file, so it is chosen by file, never from the input
shape: ``MobileFaceNet.onnx`` (the model in ``shared/models``) wants RGB scaled to [0, 1] then
ImageNet mean/std; insightface recognition models (``w600k_r50.onnx`` of ``buffalo_l``,
``glintr100.onnx`` of ``antelopev2`` …) want (x − 127.5) / 127.5. insightface feeds those BGR
images through ``cv2.dnn.blobFromImage(..., swapRB=True)``, i.e. the network sees **RGB**.
Pass ``preprocessing`` explicitly for any other file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]

from verification.align import ARCFACE_SIZE, align_face
from verification.backends._files import file_version, require_file
from verification.errors import ModelLoadError
from verification.types import Face, Image, ModelInfo, Vector

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Preprocessing:
    """How an aligned RGB uint8 crop becomes the network input: ``(x / scale - mean) / std``."""

    name: str
    rgb: bool
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


IMAGENET = Preprocessing("imagenet", True, 255.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
INSIGHTFACE = Preprocessing("insightface", True, 1.0, (127.5, 127.5, 127.5), (127.5,) * 3)

# File name → preprocessing, for the files we know. Anything else must be told.
KNOWN_MODELS: dict[str, Preprocessing] = {
    "mobilefacenet.onnx": IMAGENET,
    "w600k_r50.onnx": INSIGHTFACE,
    "w600k_mbf.onnx": INSIGHTFACE,
    "glintr100.onnx": INSIGHTFACE,
}
# insightface model folders: recognition model names in order of preference. ``det_10g.onnx`` /
# ``scrfd_*.onnx`` there are SCRFD detectors, which no backend here loads (use YuNet).
INSIGHTFACE_RECOGNITION = ("w600k_r50.onnx", "glintr100.onnx", "w600k_mbf.onnx")


def preprocessing_for(path: Path) -> Preprocessing:
    """The preprocessing of a known model file; ``ModelLoadError`` for an unknown one."""
    known = KNOWN_MODELS.get(path.name.lower())
    if known is None:
        raise ModelLoadError(path, "unknown model file: pass preprocessing= explicitly")
    return known


def _blob(crop: Image, prep: Preprocessing) -> np.ndarray:
    pixels = crop if prep.rgb else crop[:, :, ::-1]
    scaled = pixels.astype(np.float32) / np.float32(prep.scale)
    mean, std = np.array(prep.mean, np.float32), np.array(prep.std, np.float32)
    normalised = ((scaled - mean) / std).astype(np.float32)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1)[None])


class ArcFaceEmbedder:
    """An ArcFace-style ONNX model: 5-point aligned 112×112 crop → L2-normalised vector; cosine."""

    def __init__(self, model_path: Path | str, preprocessing: Preprocessing | None = None) -> None:
        path = require_file(model_path)
        self.preprocessing = preprocessing or preprocessing_for(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own untyped exceptions
            raise ModelLoadError(path, str(err)) from err
        model_input = self._session.get_inputs()[0]
        self._input = model_input.name
        if list(model_input.shape[-2:]) != [ARCFACE_SIZE, ARCFACE_SIZE]:
            raise ModelLoadError(path, f"expected a 112×112 input, got {model_input.shape}")
        self.info = ModelInfo("onnx-arcface", path.stem, file_version(path))

    def embed(self, image: Image, face: Face) -> Vector:
        """L2-normalised embedding of the aligned face."""
        crop = align_face(image, face.landmarks5)
        output = self._session.run(None, {self._input: _blob(crop, self.preprocessing)})[0]
        vector = np.asarray(output, dtype=np.float32).reshape(-1)
        return (vector / max(float(np.linalg.norm(vector)), 1e-12)).astype(np.float32)

    def similarity(self, a: Vector, b: Vector) -> float:
        """Cosine similarity."""
        denom = max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12)
        return float(np.dot(a.astype(np.float64), b.astype(np.float64)) / denom)


def load_insightface_folder(path: Path | str) -> ArcFaceEmbedder:
    """The recognition model of an insightface model folder (e.g. ``models/buffalo_l``).

    Detector files in the folder (``det_10g.onnx``, SCRFD) are not used.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ModelLoadError(folder, "not a folder")
    for name in INSIGHTFACE_RECOGNITION:
        if (folder / name).is_file():
            return ArcFaceEmbedder(folder / name, INSIGHTFACE)
    found = sorted(p.name for p in folder.glob("*.onnx"))
    raise ModelLoadError(folder, f"no known recognition model among {found}")
