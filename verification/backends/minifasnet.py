"""MiniFASNet presentation-attack models (Silent-Face) with onnxruntime on the CPU.

Each model sees the face box scaled around its centre (×2.7 for MiniFASNetV2, ×4.0 for
MiniFASNetV1SE), clamped to the image, resized to 80×80, BGR 0–255 (not normalised); softmax over
3 logits, index 1 = real. The scores of the models are averaged.

Silent-Face was trained on boxes of an SSD detector, which are square; YuNet's boxes are taller
than wide. The box is therefore made square (side = its longer side) before scaling: on the
Silent-Face samples this moves the printed photo from 0.23 to 0.03 with YuNet boxes. dlib's HOG
boxes are tighter than the SSD's and separate less well (see the tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]

from verification.backends._files import file_version, require_file
from verification.errors import ModelLoadError
from verification.types import Box, Face, Image, ModelInfo

INPUT_SIZE = 80
REAL_INDEX = 1


def scaled_crop_box(box: Box, scale: float, width: int, height: int) -> tuple[int, int, int, int]:
    """Silent-Face's crop: ``box`` scaled around its centre, shifted (not cut) to fit the image.

    Returns (left, top, right, bottom) in pixels; the scale shrinks if the image is too small.
    """
    scale = min((height - 1) / box.h, (width - 1) / box.w, scale)
    new_w, new_h = box.w * scale, box.h * scale
    cx, cy = box.center
    left, top = cx - new_w / 2, cy - new_h / 2
    right, bottom = cx + new_w / 2, cy + new_h / 2
    if left < 0:
        right, left = right - left, 0.0
    if top < 0:
        bottom, top = bottom - top, 0.0
    if right > width - 1:
        left, right = left - (right - width + 1), width - 1.0
    if bottom > height - 1:
        top, bottom = top - (bottom - height + 1), height - 1.0
    return int(left), int(top), int(right), int(bottom)


def square_box(box: Box) -> Box:
    """``box`` made square on its longer side, same centre."""
    side = max(box.w, box.h)
    cx, cy = box.center
    return Box(cx - side / 2, cy - side / 2, side, side, box.score)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    result: np.ndarray = shifted / shifted.sum()
    return result


class MiniFasNetPad:
    """Average live score of one or more MiniFASNet models, each with its crop scale."""

    def __init__(self, models: Sequence[tuple[Path | str, float]], square: bool = True) -> None:
        if not models:
            raise ValueError("MiniFasNetPad needs at least one (path, scale) model")
        self.square = square
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._models: list[tuple[ort.InferenceSession, str, float]] = []
        versions = []
        for model_path, scale in models:
            path = require_file(model_path)
            try:
                session = ort.InferenceSession(
                    str(path), options, providers=["CPUExecutionProvider"]
                )
            except Exception as err:  # onnxruntime raises its own untyped exceptions
                raise ModelLoadError(path, str(err)) from err
            self._models.append((session, session.get_inputs()[0].name, scale))
            versions.append(f"{path.stem}:{file_version(path)}")
        names = "+".join(Path(p).stem for p, _ in models)
        self.info = ModelInfo("minifasnet", names, "+".join(v.split(":")[1] for v in versions))

    def live_score(self, image: Image, face: Face) -> float:
        """Mean probability of "real" over the models, in [0, 1]."""
        height, width = image.shape[:2]
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        box = square_box(face.box) if self.square else face.box
        scores = []
        for session, input_name, scale in self._models:
            left, top, right, bottom = scaled_crop_box(box, scale, width, height)
            crop = cv2.resize(bgr[top : bottom + 1, left : right + 1], (INPUT_SIZE, INPUT_SIZE))
            blob = np.ascontiguousarray(crop.astype(np.float32).transpose(2, 0, 1)[None])
            logits = np.asarray(session.run(None, {input_name: blob})[0]).reshape(-1)
            scores.append(float(_softmax(logits.astype(np.float64))[REAL_INDEX]))
        return float(np.mean(scores))
