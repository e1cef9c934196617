"""Quality gate: pure checks of one frame and its detected faces, each failure one instruction.

Every ``QualityIssue`` maps to one short instruction *key* (``verify.guide.<value>``); ``web/``
holds the texts in its message catalogues. Issues come out most important first: the first one
is the instruction to show.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import cv2
import numpy as np

from verification.types import Box, Face, Image

BLUR_SIZE = 128  # the face crop is resized to this width before measuring sharpness


class QualityIssue(StrEnum):
    """One thing wrong with a frame, in the order instructions are given."""

    NO_FACE = "no_face"
    MULTIPLE_FACES = "multiple_faces"
    MOVE_CLOSER = "move_closer"
    MOVE_BACK = "move_back"
    CENTER_YOUR_FACE = "center_your_face"
    FACE_THE_CAMERA = "face_the_camera"
    MORE_LIGHT = "more_light"
    LESS_LIGHT = "less_light"
    LIGHT_BEHIND = "light_behind"
    SHOW_YOUR_EYES = "show_your_eyes"
    HOLD_STILL = "hold_still"

    @property
    def message_key(self) -> str:
        """The catalogue key of the instruction, e.g. ``verify.guide.move_closer``."""
        return f"verify.guide.{self.value}"


@dataclass(frozen=True, slots=True)
class QualityConfig:
    """Thresholds of the quality gate (defaults: a live 640×480 call frame)."""

    min_face_px: float = 80.0  # face box width, pixels
    min_face_ratio: float = 0.15  # face box width / frame width
    max_face_ratio: float = 0.55
    other_face_ratio: float = 0.4  # a second face counts when at least this × the main face
    max_outside: float = 0.08  # fraction of the box width/height allowed outside the frame
    min_sharpness: float = 9.0  # variance of the Laplacian on the 128-px face crop
    min_brightness: float = 60.0  # mean luma of the face, 0–255
    max_brightness: float = 205.0
    max_clipped: float = 0.25  # fraction of face pixels at ≥ 250
    backlight_gap: float = 55.0  # frame-border luma minus face luma
    max_yaw: float = 0.25  # 5 points: nose offset from the eye midline / eye distance
    max_yaw68: float = 0.18  # 68 points: (nose-to-left-jaw − nose-to-right-jaw) / their sum
    pitch_range: tuple[float, float] = (0.25, 0.75)  # nose height between eyes (0) and mouth (1)
    max_roll_deg: float = 30.0
    min_eye_contrast: float = 12.0  # std of luma around each eye


REFERENCE_PHOTO = QualityConfig(
    min_face_px=60.0,
    min_face_ratio=0.0,
    max_face_ratio=1.5,
    max_outside=0.15,
    max_yaw=0.45,
    max_yaw68=0.5,
)


@dataclass(frozen=True, slots=True)
class QualityReport:
    """The issues found (most important first) and the measures behind them."""

    issues: tuple[QualityIssue, ...]
    measures: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No issue."""
        return not self.issues

    @property
    def message_keys(self) -> tuple[str, ...]:
        """Catalogue keys of the instructions, most important first."""
        return tuple(issue.message_key for issue in self.issues)


def _gray(image: Image) -> np.ndarray:
    return np.asarray(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))


def _crop(gray: np.ndarray, box: Box, shrink: float = 0.0) -> np.ndarray:
    """The part of ``box`` (shrunk by ``shrink`` of its size on each side) inside the image."""
    height, width = gray.shape[:2]
    dx, dy = box.w * shrink, box.h * shrink
    left, top = max(0, int(box.x + dx)), max(0, int(box.y + dy))
    right, bottom = min(width, int(box.x + box.w - dx)), min(height, int(box.y + box.h - dy))
    return gray[top:bottom, left:right]


def outside_fraction(box: Box, width: int, height: int) -> float:
    """The largest fraction of the box's width or height that lies outside the frame."""
    horizontal = max(0.0, -box.x) + max(0.0, box.x + box.w - width)
    vertical = max(0.0, -box.y) + max(0.0, box.y + box.h - height)
    return max(horizontal / box.w, vertical / box.h)


def pose_ratios(landmarks5: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll°) from the 5 points, in the frame of the eye line.

    yaw: nose offset from the eyes' midpoint along the eye line / eye distance (0 = frontal);
    pitch: nose position between the eye line (0) and the mouth line (1), ≈ 0.5 when frontal.
    """
    pts = landmarks5.astype(np.float64)
    eye_vec = pts[1] - pts[0]
    eye_dist = max(float(np.hypot(*eye_vec)), 1e-6)
    along = eye_vec / eye_dist
    down = np.array([-along[1], along[0]])
    eyes_mid, mouth_mid = (pts[0] + pts[1]) / 2, (pts[3] + pts[4]) / 2
    yaw = float(np.dot(pts[2] - eyes_mid, along)) / eye_dist
    mouth_depth = max(float(np.dot(mouth_mid - eyes_mid, down)), 1e-6)
    pitch = float(np.dot(pts[2] - eyes_mid, down)) / mouth_depth
    roll = float(np.degrees(np.arctan2(eye_vec[1], eye_vec[0])))
    return yaw, pitch, roll


def yaw68(points68: np.ndarray) -> float:
    """Yaw from the jaw outline: 0 frontal, ±0.2 ≈ a 25–30° turn (dlib points; measured on d12)."""
    left = float(np.hypot(*(points68[30] - points68[0])))
    right = float(np.hypot(*(points68[16] - points68[30])))
    return (left - right) / max(left + right, 1e-6)


def sharpness(gray: np.ndarray, box: Box) -> float:
    """Variance of the Laplacian of the inner face, resized to ``BLUR_SIZE`` px wide."""
    crop = _crop(gray, box, 0.15)
    if crop.size == 0:
        return 0.0
    size = (BLUR_SIZE, max(1, round(BLUR_SIZE * crop.shape[0] / crop.shape[1])))
    resized = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(resized, cv2.CV_64F).var())


def eye_contrast(gray: np.ndarray, landmarks5: np.ndarray) -> float:
    """The lower of the two eyes' luma standard deviations (0 if an eye is outside the frame)."""
    height, width = gray.shape[:2]
    radius = max(2, int(0.18 * float(np.hypot(*(landmarks5[1] - landmarks5[0])))))
    values = []
    for x, y in landmarks5[:2]:
        if not (0 <= x < width and 0 <= y < height):
            return 0.0
        patch = gray[
            max(0, int(y) - radius) : int(y) + radius, max(0, int(x) - radius) : int(x) + radius
        ]
        values.append(float(patch.std()) if patch.size else 0.0)
    return min(values)


def main_face(faces: Sequence[Face]) -> Face | None:
    """The largest face (the customer is the one nearest the camera)."""
    return max(faces, key=lambda f: f.box.w * f.box.h, default=None)


def _size_issues(box: Box, width: int, height: int, cfg: QualityConfig) -> list[QualityIssue]:
    ratio = box.w / width
    if box.w < cfg.min_face_px or ratio < cfg.min_face_ratio:
        return [QualityIssue.MOVE_CLOSER]
    if ratio > cfg.max_face_ratio:
        return [QualityIssue.MOVE_BACK]
    if outside_fraction(box, width, height) > cfg.max_outside:
        return [QualityIssue.CENTER_YOUR_FACE]
    return []


def _pose_issues(measures: dict[str, float], cfg: QualityConfig) -> list[QualityIssue]:
    low, high = cfg.pitch_range
    max_yaw = cfg.max_yaw68 if "yaw68" in measures else cfg.max_yaw
    yaw = measures.get("yaw68", measures["yaw"])
    turned = abs(yaw) > max_yaw or abs(measures["roll"]) > cfg.max_roll_deg
    if turned or not low <= measures["pitch"] <= high:
        return [QualityIssue.FACE_THE_CAMERA]
    return []


def _light_issues(
    gray: np.ndarray, box: Box, cfg: QualityConfig
) -> tuple[list[QualityIssue], dict[str, float]]:
    face = _crop(gray, box, 0.15)
    if face.size == 0:
        return [], {}
    brightness = float(face.mean())
    clipped = float((face >= 250).mean())
    border = np.concatenate(
        [
            gray[: gray.shape[0] // 8].ravel(),
            gray[:, : gray.shape[1] // 8].ravel(),
            gray[:, -gray.shape[1] // 8 :].ravel(),
        ]
    )
    gap = float(border.mean()) - brightness
    measures = {"brightness": brightness, "clipped": clipped, "backlight_gap": gap}
    if brightness < cfg.min_brightness:
        issue = QualityIssue.LIGHT_BEHIND if gap > cfg.backlight_gap else QualityIssue.MORE_LIGHT
        return [issue], measures
    if brightness > cfg.max_brightness or clipped > cfg.max_clipped:
        return [QualityIssue.LESS_LIGHT], measures
    return [], measures


def assess_quality(
    image: Image, faces: Sequence[Face], config: QualityConfig | None = None
) -> QualityReport:
    """Check one RGB frame and the faces found in it; issues come most important first."""
    cfg = config or QualityConfig()
    face = main_face(faces)
    if face is None:
        return QualityReport((QualityIssue.NO_FACE,))
    issues: list[QualityIssue] = []
    others = [f for f in faces if f is not face and f.box.w >= cfg.other_face_ratio * face.box.w]
    if others:
        issues.append(QualityIssue.MULTIPLE_FACES)
    height, width = image.shape[:2]
    issues += _size_issues(face.box, width, height, cfg)
    gray = _gray(image)
    yaw, pitch, roll = pose_ratios(face.landmarks5)
    measures = {"face_ratio": face.box.w / width, "yaw": yaw, "pitch": pitch, "roll": roll}
    if face.landmarks68 is not None:
        measures["yaw68"] = yaw68(face.landmarks68)
    issues += _pose_issues(measures, cfg)
    light, light_measures = _light_issues(gray, face.box, cfg)
    measures |= light_measures
    issues += light
    measures["eye_contrast"] = eye_contrast(gray, face.landmarks5)
    if measures["eye_contrast"] < cfg.min_eye_contrast:
        issues.append(QualityIssue.SHOW_YOUR_EYES)
    measures["sharpness"] = sharpness(gray, face.box)
    if measures["sharpness"] < cfg.min_sharpness:
        issues.append(QualityIssue.HOLD_STILL)
    return QualityReport(tuple(sorted(set(issues), key=list(QualityIssue).index)), measures)
