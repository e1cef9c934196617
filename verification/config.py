"""Engine settings and the factory that builds a ``FaceEngine`` from a backend kind.

Backends are imported inside ``build_engine``: choosing ``onnx`` does not import dlib, and
importing this module loads nothing.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from verification.challenges import DEFAULT_VOCABULARY, PAUSE, Action, draw_actions
from verification.quality import REFERENCE_PHOTO, QualityConfig

if TYPE_CHECKING:
    from verification.engine import FaceEngine
    from verification.types import FaceDetector, FaceEmbedder, LandmarkModel, PadModel

logger = logging.getLogger(__name__)

KINDS = ("dlib", "onnx", "fused")
# Paths under a models folder laid out like ``shared/models`` (see its README).
YUNET_FILE = "face_detect_yunet/face_detection_yunet_2023mar.onnx"
ARCFACE_FILE = "face_recog_mobilefacenet/MobileFaceNet.onnx"
PAD_FILES = (
    ("antispoof_minifasnet/onnx/MiniFASNetV2.onnx", 2.7),
    ("antispoof_minifasnet/onnx/MiniFASNetV1SE.onnx", 4.0),
)


@dataclass(frozen=True, slots=True)
class VerificationConfig:
    """How the server verifies: which engine, how many workers, how often it samples frames."""

    backend: str = "dlib"
    models_dir: Path | None = None
    workers: int = 1  # 0: no verification on this node (attempts are refused)
    sample_fps: float = 10.0
    # Frames analysed per second while a blink is coming or asked (the camera's rate: a blink
    # lasts 100–150 ms). Capped by what the camera delivers.
    camera_fps: float = 30.0
    challenges: int = 3
    challenge_seconds: float = 8.0  # time limit of each challenge
    vocabulary: tuple[str, ...] = ()  # empty: every action; tests restrict it to a clip's actions
    # Seconds of "hold still" before each instruction (random within). (0, 0) turns the pause
    # off: for tests whose looping clip cannot hold still (the pause is an anti-replay check).
    pause: tuple[float, float] = PAUSE
    # Test setting: plans need not hold a head movement (browser tests whose fake camera loops a
    # clip of blinks and smiles). Such plans are met by a replayed recording: never in service.
    replayable_plans: bool = False
    # Seconds the embedder may take, after the last challenge, to score the bound frames
    # before the attempt ends undecided (the server's fault: it counts for nothing).
    decision_seconds: float = 5.0
    # Seconds of the server's own stalls an attempt may absorb (its clock pauses meanwhile)
    # before it ends undecided.
    max_stall_seconds: float = 8.0
    # Frames a second the server must have analysed in a challenge's window for its time-out to
    # be the customer's (else undecided, see verification.attempt.AttemptConfig); each is capped
    # at two thirds of the rate asked for. 0: every time-out is the customer's.
    min_blink_fps: float = 20.0
    min_pose_fps: float = 4.0
    max_attempts_per_case: int = 3
    lock_after_failures: int = 5
    lock_window_hours: int = 24

    def __post_init__(self) -> None:
        if self.backend not in KINDS:
            raise ValueError(f"face backend must be one of {', '.join(KINDS)}: {self.backend!r}")
        if self.backend != "dlib" and self.models_dir is None:
            raise ValueError(f"the {self.backend} face backend needs a models folder")
        low, high = self.pause
        if not 0 <= low <= high <= 10:
            raise ValueError(f"the hold-still pause must be 0 ≤ min ≤ max ≤ 10 s: {self.pause}")
        if not self.sample_fps <= self.camera_fps <= 60 or self.decision_seconds <= 0:
            raise ValueError(f"invalid verification rates or limits: {self}")
        if self.workers < 0 or not 1 <= self.sample_fps <= 30 or self.challenges < 1:
            raise ValueError(f"invalid verification settings: {self}")
        # A vocabulary no plan can be drawn from is refused when the settings load, not at the
        # first customer's attempt.
        draw_actions(
            max(self.challenges, 3),
            self.actions(),
            random.Random(0),
            replayable=self.replayable_plans,
        )

    def actions(self) -> tuple[Action, ...]:
        """The challenge vocabulary (every action but the nod when none is configured)."""
        known = {a.value: a for a in Action}
        unknown = [v for v in self.vocabulary if v not in known]
        if unknown:
            raise ValueError(f"unknown challenge actions {unknown}; known: {', '.join(known)}")
        return tuple(known[v] for v in self.vocabulary) or DEFAULT_VOCABULARY


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """How the engine analyses frames and enrols reference photos."""

    detect_width: int = 320  # frames wider than this are downscaled for full detection
    redetect_every: int = 10  # full-frame detection at least every N tracked frames
    track_margin: float = 0.4  # tracking window = last box grown by this on each side
    track_face_px: float = 100.0  # the tracking window is scaled so the face is this wide
    min_track_iou: float = 0.3  # a tracked box must overlap the last one this much
    enrol_max_side: int = 1024  # reference photos are downscaled to this for detection
    reference_crop_px: int = 256
    quality: QualityConfig = field(default_factory=QualityConfig)
    reference_quality: QualityConfig = REFERENCE_PHOTO

    def __post_init__(self) -> None:
        if self.detect_width < 0 or self.redetect_every < 1 or self.track_face_px <= 0:
            raise ValueError(f"invalid engine config: {self}")


def _models_file(models_dir: Path | None, relative: str) -> Path:
    if models_dir is None:
        raise ValueError(f"the onnx backend needs a models folder (for {relative})")
    return models_dir / relative


def _onnx_embedder(models_dir: Path | None, *, flip: bool = False) -> FaceEmbedder:
    from verification.backends.flip import FlipEmbedder
    from verification.backends.onnx_arcface import ArcFaceEmbedder

    embedder = ArcFaceEmbedder(_models_file(models_dir, ARCFACE_FILE))
    return FlipEmbedder(embedder) if flip else embedder


def _pad(models_dir: Path | None) -> PadModel | None:
    if models_dir is None or not all((models_dir / p).is_file() for p, _ in PAD_FILES):
        return None
    from verification.backends.minifasnet import MiniFasNetPad

    return MiniFasNetPad([(models_dir / p, scale) for p, scale in PAD_FILES])


LANDMARK_KINDS = ("mediapipe", "dlib")


def _landmark_model(kind: str) -> LandmarkModel:
    if kind == "mediapipe":
        from verification.backends.mediapipe_mesh import MeshLandmarks

        return MeshLandmarks()
    if kind == "dlib":
        from verification.backends.dlib_backend import DlibLandmarks

        return DlibLandmarks()
    raise ValueError(f"unknown landmark model {kind!r}, expected one of {LANDMARK_KINDS}")


def build_engine(
    kind: str = "dlib",
    models_dir: Path | None = None,
    config: EngineConfig | None = None,
    *,
    landmarks: str = "mediapipe",
) -> FaceEngine:
    """A ready engine.

    * ``dlib`` (default): HOG detector, dlib landmarks and embedder; needs only PyPI packages.
    * ``onnx``: YuNet detector + ArcFace-style embedder (MobileFaceNet) from ``models_dir`` with
      flip averaging (the best configuration measured by bench/eval_match.py), dlib 68-point
      landmarks (liveness needs them).
    * ``fused``: dlib detector and landmarks, embeddings of dlib **and** the ONNX embedder with
      z-normalised score fusion (``FusedEmbedder``).

    Liveness reads MediaPipe FaceMesh landmarks (``landmarks="mediapipe"``, from the PyPI
    wheel) on every kind; ``landmarks="dlib"`` keeps dlib's 68-point predictor (for comparison:
    its eyes never close fully in a blink, see bench/eval_actions.py). The MiniFASNet PAD model
    is added whenever its files are in ``models_dir``.
    """
    from verification.backends.dlib_backend import DlibDetector, DlibEmbedder, DlibLandmarks
    from verification.engine import FaceEngine

    if kind not in KINDS:
        raise ValueError(f"unknown engine kind {kind!r}, expected one of {KINDS}")
    landmark_model = _landmark_model(landmarks)
    if kind == "onnx":
        from verification.backends.yunet import YuNetDetector

        detector: FaceDetector = YuNetDetector(_models_file(models_dir, YUNET_FILE))
        embedder: FaceEmbedder = _onnx_embedder(models_dir, flip=True)
    else:
        # dlib's HOG boxes come with its own 5 points (from its 68-point predictor).
        detector = DlibDetector(landmarks=DlibLandmarks())
        embedder = DlibEmbedder()
        if kind == "fused":
            from verification.backends.fused import FusedEmbedder

            embedder = FusedEmbedder([embedder, _onnx_embedder(models_dir)])
    engine = FaceEngine(detector, landmark_model, embedder, _pad(models_dir), config)
    logger.info("face engine %s: %s", kind, engine.describe())
    return engine
