"""YuNet face detector through ``cv2.FaceDetectorYN`` (model file from a configured path)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from verification.backends._files import file_version, require_file
from verification.errors import ModelLoadError
from verification.types import Box, Face, Image, ModelInfo


def _face_from_row(row: np.ndarray) -> Face:
    """One YuNet output row: box, 5 points, score.

    YuNet lists the subject's right eye, left eye, nose, right and left mouth corner; for a
    camera image the subject's right is the image's left, so the order already is the
    image-left-first ArcFace order of ``Face.landmarks5`` (checked on real photos in the tests).
    """
    x, y, w, h = (float(v) for v in row[:4])
    points = np.asarray(row[4:14], dtype=np.float32).reshape(5, 2)
    return Face(Box(x, y, w, h, float(row[14])), points)


class YuNetDetector:
    """YuNet (OpenCV model zoo ``face_detection_yunet_2023mar.onnx``): box + 5 landmarks."""

    def __init__(
        self, model_path: Path | str, score_threshold: float = 0.6, nms_threshold: float = 0.3
    ) -> None:
        path = require_file(model_path)
        try:
            self._detector = cv2.FaceDetectorYN.create(
                str(path), "", (320, 320), score_threshold, nms_threshold
            )
        except cv2.error as err:
            raise ModelLoadError(path, str(err)) from err
        self.info = ModelInfo("yunet", path.name, file_version(path))

    def detect(self, image: Image) -> list[Face]:
        """Every face in ``image`` (RGB), most confident first."""
        height, width = image.shape[:2]
        self._detector.setInputSize((width, height))
        _, rows = self._detector.detect(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if rows is None:
            return []
        faces = [_face_from_row(row) for row in rows if row[2] > 0 and row[3] > 0]
        return sorted(faces, key=lambda f: -f.box.score)
