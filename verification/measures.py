"""Per-frame face measures from 68 landmarks (dlib / iBUG order) and a customer's own baseline.

Head pose comes from ``cv2.solvePnP`` of ten rigid landmarks on a generic 3-D face, with a pinhole
camera whose focal length is the image width. The angles are read from the face's forward
direction, not from an Euler decomposition, so their meaning is plain:

* ``yaw`` > 0: the nose points towards the **image's right**. The server sees the camera's own
  (not mirrored) picture, in which the subject's left side is on the image's right, so yaw > 0
  means the subject turned to **their left**.
* ``pitch`` > 0: the nose points down (the subject looks down).
* ``roll`` > 0: the eye line turns clockwise in the image (the subject tilts their head towards
  their left shoulder).

Liveness decides on measures *relative* to a :class:`Baseline` (median of the customer's first
neutral frames), which removes the differences between faces (narrow eyes, wide mouths) and the
camera's angle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from verification.types import Points

# Generic face (anthropometric model used by lincolnhard/head-pose-estimation, in cm), in camera
# axes: x to the image's right, y down, z away from the camera, so that a frontal face looks along
# -z. Only points that expressions hardly move: brow ends 17 21 22 26, eye corners 36 39 42 45,
# nostril wings 31 35 (a laughing mouth or a dropped chin would bend the pose).
_POSE_INDEX = (17, 21, 22, 26, 36, 39, 42, 45, 31, 35)
_MODEL_3D = np.array(
    [
        (-6.825897, -6.760612, -4.402142),
        (-1.330353, -7.122144, -6.903745),
        (1.330353, -7.122144, -6.903745),
        (6.825897, -6.760612, -4.402142),
        (-5.311432, -5.485328, -3.987654),
        (-1.789930, -5.393625, -4.413414),
        (1.789930, -5.393625, -4.413414),
        (5.311432, -5.485328, -3.987654),
        (-2.005628, -1.409845, -6.165652),
        (2.005628, -1.409845, -6.165652),
    ],
    dtype=np.float64,
)

_RIGHT_EYE_IMG_LEFT = slice(36, 42)  # the eye on the image's left
_EYE_IMG_RIGHT = slice(42, 48)


def _dist(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    return float(np.hypot(*(a - b)))


def eye_aspect_ratio(eye: npt.NDArray[np.float64]) -> float:
    """(|p2-p6| + |p3-p5|) / (2 |p1-p4|) of the six points of one eye (Soukupová & Čech)."""
    width = _dist(eye[0], eye[3])
    if width <= 0:
        return 0.0
    return (_dist(eye[1], eye[5]) + _dist(eye[2], eye[4])) / (2.0 * width)


def mouth_aspect_ratio(pts: npt.NDArray[np.float64]) -> float:
    """Inner-lip opening over inner-lip width: ~0 closed, ~0.5+ wide open."""
    width = _dist(pts[60], pts[64])
    if width <= 0:
        return 0.0
    opening = (_dist(pts[61], pts[67]) + _dist(pts[62], pts[66]) + _dist(pts[63], pts[65])) / 3
    return opening / width


def inter_ocular(pts: npt.NDArray[np.float64]) -> float:
    """Distance between the two eye centres, in pixels."""
    return _dist(pts[_RIGHT_EYE_IMG_LEFT].mean(axis=0), pts[_EYE_IMG_RIGHT].mean(axis=0))


@dataclass(frozen=True, slots=True)
class Pose:
    """Head orientation in degrees (sign convention in the module docstring)."""

    yaw: float
    pitch: float
    roll: float


def head_pose(pts: npt.NDArray[np.float64], width: int, height: int) -> Pose:
    """Yaw/pitch/roll from a PnP solve of ten landmarks on a generic 3-D face."""
    image_points = pts[list(_POSE_INDEX)].astype(np.float64)
    focal = float(width)
    camera = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], dtype=np.float64)
    ok, rvec, _tvec = cv2.solvePnP(
        _MODEL_3D, image_points, camera, np.zeros(4), flags=cv2.SOLVEPNP_SQPNP
    )
    if not ok:
        return Pose(0.0, 0.0, 0.0)
    rot, _ = cv2.Rodrigues(rvec)
    forward = rot @ np.array([0.0, 0.0, -1.0])  # where the nose points, camera axes
    across = rot @ np.array([1.0, 0.0, 0.0])  # the face's left-to-right (image) axis
    yaw = np.degrees(np.arctan2(forward[0], -forward[2]))
    pitch = np.degrees(np.arctan2(forward[1], np.hypot(forward[0], forward[2])))
    roll = np.degrees(np.arctan2(across[1], across[0]))
    return Pose(float(yaw), float(pitch), float(roll))


@dataclass(frozen=True, slots=True)
class FrameMeasures:
    """What liveness reads from one frame's landmarks."""

    ear: float  # mean eye aspect ratio of both eyes
    ear_left: float  # the eye on the image's left
    ear_right: float  # the eye on the image's right
    mar: float  # inner mouth opening / width
    smile: float  # mouth-corner width / inter-ocular distance
    yaw: float
    pitch: float
    roll: float
    face_size: float  # inter-ocular distance / image width
    iod: float  # inter-ocular distance in pixels


def measure(landmarks68: Points, width: int, height: int) -> FrameMeasures:
    """All measures of one face: ``landmarks68`` (68, 2) in a ``width`` × ``height`` image."""
    if landmarks68.shape != (68, 2):
        raise ValueError(f"landmarks68 must be (68, 2), got {landmarks68.shape}")
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}×{height}")
    pts = landmarks68.astype(np.float64)
    left = eye_aspect_ratio(pts[_RIGHT_EYE_IMG_LEFT])
    right = eye_aspect_ratio(pts[_EYE_IMG_RIGHT])
    iod = inter_ocular(pts)
    pose = head_pose(pts, width, height)
    return FrameMeasures(
        ear=(left + right) / 2,
        ear_left=left,
        ear_right=right,
        mar=mouth_aspect_ratio(pts),
        smile=_dist(pts[48], pts[54]) / iod if iod > 0 else 0.0,
        yaw=pose.yaw,
        pitch=pose.pitch,
        roll=pose.roll,
        face_size=iod / width,
        iod=iod,
    )


@dataclass(frozen=True, slots=True)
class Baseline:
    """The customer's neutral face: medians over their first steady frames."""

    ear: float
    mar: float
    smile: float
    yaw: float
    pitch: float
    roll: float
    face_size: float
    frames: int

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ValueError("a baseline needs at least one frame")
        if self.ear <= 0 or self.smile <= 0 or self.face_size <= 0:
            raise ValueError("baseline eye ratio, smile ratio and face size must be positive")

    @classmethod
    def from_frames(cls, frames: Sequence[FrameMeasures]) -> Baseline:
        """Median of each measure over ``frames`` (robust to a blink among them)."""
        if not frames:
            raise ValueError("a baseline needs at least one frame")

        def med(name: str) -> float:
            return float(np.median([getattr(f, name) for f in frames]))

        return cls(
            ear=med("ear"),
            mar=med("mar"),
            smile=med("smile"),
            yaw=med("yaw"),
            pitch=med("pitch"),
            roll=med("roll"),
            face_size=med("face_size"),
            frames=len(frames),
        )


@dataclass(frozen=True, slots=True)
class Relative:
    """One frame's measures relative to the baseline (ratios, differences in degrees)."""

    t: float
    ear: float  # ear / baseline ear: ~1 open, < 0.6 closed
    mar: float  # mar - baseline mar: > 0.25 clearly open
    smile: float  # smile / baseline smile: > 1.1 a smile
    yaw: float  # degrees; > 0 turned to the subject's left
    pitch: float  # degrees; > 0 looking down
    roll: float
    size: float  # face size / baseline size


def relative(t: float, frame: FrameMeasures, base: Baseline) -> Relative:
    """``frame`` at time ``t`` expressed against ``base``."""
    return Relative(
        t=t,
        ear=frame.ear / base.ear,
        mar=frame.mar - base.mar,
        smile=frame.smile / base.smile,
        yaw=frame.yaw - base.yaw,
        pitch=frame.pitch - base.pitch,
        roll=frame.roll - base.roll,
        size=frame.face_size / base.face_size,
    )
