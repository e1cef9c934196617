"""Passive checks over a whole attempt: the same person, a 3-D head, a moving picture, PAD.

Each check returns :class:`Finding` values with a machine-readable ``code`` and the measured
figures; :mod:`verification.decision` maps codes to pass / refer / fail through the policy.

3-D consistency: a photo moved, tilted or bent in front of the camera is (nearly) a plane, and
every view of a plane is a homography of every other. Between a near-frontal frame and the frames
of a head turn we fit a homography (RANSAC) to the landmarks of the eyes, brows and mouth and
measure how far the **nose** lands from where that homography puts it, in inter-ocular
distances. A real nose sticks out ~0.4 IOD in front of the eyes: turning 20° moves it ~0.1 IOD
off the plane's prediction. A sheet gives only landmark noise. Measured on real clips (dlib
landmarks, 480 px): real turns of 12–25° give 0.02–0.2 (75th percentile over a turn ≥ 0.06),
perspective-warped photos < 0.01.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt

from verification.attempt import AttemptResult, Sample
from verification.measures import Relative, inter_ocular
from verification.types import Points

_NOSE = list(range(27, 36))
_FRAME = [*range(17, 27), *range(36, 48), *range(48, 60)]  # brows, eyes, outer lips

_VIRTUAL_CAMERA = re.compile(
    r"obs|manycam|virtual|fake|snap ?camera|xsplit|splitcam|e2esoft|vcam|mmhmm|droidcam"
    r"|camtwist|nvidia broadcast|chromacam|youcam|webcamoid",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Finding:
    """One machine-readable observation, e.g. ``liveness.planar_motion`` with its figures."""

    code: str
    detail: Mapping[str, float | str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PassiveConfig:
    """Levels of the passive checks (from the policy file)."""

    min_turn_for_parallax: float = 12.0  # degrees of yaw from baseline before we judge 3-D
    min_parallax: float = 0.03  # nose off the plane's prediction, in IODs (sheet: < 0.01)
    frozen_span: float = 1.0  # seconds of identical frames / no landmark motion
    frozen_motion: float = 0.002  # mean landmark step below this (in IODs) = not moving
    # Sensor noise jitters a still photo's landmarks ~0.01 IOD per frame, independently from
    # frame to frame: the lag-1 autocorrelation of the face's position is ≈ 0 (−0.24…+0.07 over
    # 8 s, −0.43…+0.35 in 3-s windows, on noisy stills of 17 frames of six real faces, σ 1.5 and
    # 3); a live face sitting still sways smoothly (0.83–0.98 over the near-still clips s18,
    # s20, d9; ≥ 0.43 in every 3-s window). Below this over the attempt: frozen.
    frozen_autocorr: float = 0.3
    frozen_min_frames: float = 40  # face frames needed before the autocorrelation is judged
    identity_min_similarity: float | None = None  # per model; None = check not configured
    pad_fail: float = 0.5  # median live score below: spoof
    pad_refer: float = 0.8  # below: uncertain


def nose_parallax(reference: Points, moved: Points) -> float:
    """How far the nose leaves the plane through the rest of the face, in IODs of ``moved``."""
    src = reference[_FRAME].astype(np.float32)
    dst = moved[_FRAME].astype(np.float32)
    iod = inter_ocular(moved.astype(np.float64))
    if iod <= 0:
        return 0.0
    hom, _ = cv2.findHomography(src, dst, cv2.RANSAC, 0.03 * iod)
    if hom is None:
        return 0.0
    nose = reference[_NOSE].astype(np.float64).reshape(-1, 1, 2)
    predicted = cv2.perspectiveTransform(nose, hom).reshape(-1, 2)
    error = np.linalg.norm(predicted - moved[_NOSE].astype(np.float64), axis=1)
    return float(np.median(error) / iod)


def _faces(samples: Iterable[Sample]) -> list[Sample]:
    return [s for s in samples if s.relative is not None and s.observation.landmarks68 is not None]


def check_planarity(samples: Sequence[Sample], cfg: PassiveConfig) -> list[Finding]:
    """``liveness.planar_motion`` when the head turned but the face moved as a plane."""
    faces = _faces(samples)
    turned = _held_turns(faces, cfg.min_turn_for_parallax)
    if not turned:
        return []
    frontal = min(faces, key=lambda s: abs(_rel(s).yaw))
    ref = _marks(frontal)
    parallax = [nose_parallax(ref, _marks(s)) for s in turned]
    best = float(np.percentile(parallax, 75))
    max_turn = max(abs(_rel(s).yaw) for s in turned)
    detail: dict[str, float | str] = {
        "parallax": round(best, 4),
        "max_turn_deg": round(max_turn, 1),
        "frames": len(turned),
    }
    if best < cfg.min_parallax:
        return [Finding("liveness.planar_motion", detail)]
    return []


def _held_turns(faces: Sequence[Sample], min_turn: float, run: int = 3) -> list[Sample]:
    """Faces turned ≥ ``min_turn`` in runs of at least ``run`` consecutive frames: a head turn
    or a turned sheet, not a one-frame pose glitch (dlib reads d12's "oh" as a 19° yaw)."""
    kept: list[Sample] = []
    current: list[Sample] = []
    for s in [*faces, None]:
        if s is not None and abs(_rel(s).yaw) >= min_turn:
            current.append(s)
            continue
        if len(current) >= run:
            kept += current
        current = []
    return kept


def check_frozen(samples: Sequence[Sample], cfg: PassiveConfig) -> list[Finding]:
    """``liveness.frozen`` when identical frames or motionless landmarks span too long, or when
    the face's position only jitters like sensor noise (uncorrelated from frame to frame).

    Landmarks only: it also judges the frames of an attempt that never got a baseline."""
    faces = [s for s in samples if s.observation.landmarks68 is not None]
    repeat = _longest(samples, _same_hash)
    still = _longest(faces, lambda a, b: _step(a, b) < cfg.frozen_motion)
    span = max(repeat, still)
    autocorr = position_autocorrelation(faces) if len(faces) >= cfg.frozen_min_frames else None
    white = autocorr is not None and autocorr < cfg.frozen_autocorr
    if span >= cfg.frozen_span or white:
        detail: dict[str, float | str] = {
            "repeated_s": round(repeat, 2),
            "motionless_s": round(still, 2),
        }
        if autocorr is not None:
            detail["motion_autocorr"] = round(autocorr, 3)
        return [Finding("liveness.frozen", detail)]
    return []


def position_autocorrelation(samples: Sequence[Sample]) -> float:
    """Lag-1 autocorrelation of the face's position (mean of its 68 landmarks, x and y pooled)
    over ``samples`` (faces only): ≈ 0 for a still picture whose landmarks only jitter with the
    sensor noise, near 1 for a live head's smooth sway."""
    marks = np.array([_marks(s).astype(np.float64) for s in samples])
    if len(marks) < 3:
        return 1.0
    centre = marks.mean(axis=1)
    centre -= centre.mean(axis=0)
    power = float((centre * centre).sum())
    if power <= 0:
        return 0.0  # identical landmarks: no motion at all
    return float((centre[1:] * centre[:-1]).sum() / power)


def check_identity(similarities: Sequence[float], cfg: PassiveConfig) -> list[Finding]:
    """``identity.changed`` when a sampled frame's embedding is far from the attempt's anchor.

    ``similarities``: the embedder's similarity of each sampled frame to one anchor frame (or
    all pairs), on that embedder's own scale.
    """
    if cfg.identity_min_similarity is None or not similarities:
        return [Finding("identity.unchecked")]
    worst = float(min(similarities))
    if worst < cfg.identity_min_similarity:
        detail: dict[str, float | str] = {
            "min_similarity": round(worst, 4),
            "threshold": cfg.identity_min_similarity,
            "frames": len(similarities),
        }
        return [Finding("identity.changed", detail)]
    return []


def check_reference_floor(similarities: Sequence[float], floor: float | None) -> list[Finding]:
    """``identity.changed`` when a bound frame is less like the reference than ``floor`` (the
    service's refer threshold): every frame that counts must show the customer, not only the
    best ones (a photo held in the pauses, somebody else answering the challenges)."""
    if floor is None or not similarities:
        return []
    worst = float(min(similarities))
    if worst >= floor:
        return []
    detail: dict[str, float | str] = {
        "min_reference_similarity": round(worst, 4),
        "threshold": floor,
        "frames": len(similarities),
        "below": sum(1 for s in similarities if s < floor),
    }
    return [Finding("identity.changed", detail)]


def check_pad(scores: Sequence[float], cfg: PassiveConfig) -> list[Finding]:
    """``pad.spoof`` / ``pad.uncertain`` from the median live score (nothing when no model)."""
    if not scores:
        return []
    median = float(np.median(scores))
    detail: dict[str, float | str] = {"median_live": round(median, 4), "frames": len(scores)}
    if median < cfg.pad_fail:
        return [Finding("pad.spoof", detail)]
    if median < cfg.pad_refer:
        return [Finding("pad.uncertain", detail)]
    return []


def check_camera_label(label: str | None) -> list[Finding]:
    """``camera.virtual_hint`` when the browser's camera name looks like a virtual camera."""
    if label and (match := _VIRTUAL_CAMERA.search(label)):
        return [Finding("camera.virtual_hint", {"label": label[:80], "matched": match.group(0)})]
    return []


def analyse(
    result: AttemptResult,
    cfg: PassiveConfig,
    identity_similarities: Sequence[float] = (),
    camera_label: str | None = None,
) -> tuple[Finding, ...]:
    """Every passive finding for one attempt."""
    samples = result.samples
    pads = [s.observation.pad_score for s in samples if s.observation.pad_score is not None]
    return (
        *check_planarity(samples, cfg),
        *check_frozen(samples, cfg),
        *check_identity(identity_similarities, cfg),
        *check_pad(pads, cfg),
        *check_camera_label(camera_label),
    )


# -- helpers ---------------------------------------------------------------------------------


def _rel(s: Sample) -> Relative:
    if s.relative is None:
        raise ValueError("sample has no relative measures")
    return s.relative


def _marks(s: Sample) -> Points:
    if s.observation.landmarks68 is None:
        raise ValueError("sample has no landmarks")
    return s.observation.landmarks68


def _same_hash(a: Sample, b: Sample) -> bool:
    ha, hb = a.observation.frame_hash, b.observation.frame_hash
    return ha is not None and ha == hb


def _step(a: Sample, b: Sample) -> float:
    pa: npt.NDArray[np.float64] = _marks(a).astype(np.float64)
    pb: npt.NDArray[np.float64] = _marks(b).astype(np.float64)
    iod = inter_ocular(pa)
    if iod <= 0:
        return 0.0
    return float(np.mean(np.linalg.norm(pa - pb, axis=1)) / iod)


def _longest(samples: Sequence[Sample], same: Callable[[Sample, Sample], bool]) -> float:
    """Longest time span of consecutive samples for which ``same(prev, next)`` holds."""
    best = 0.0
    start: float | None = None
    for prev, nxt in itertools.pairwise(samples):
        if same(prev, nxt):
            start = prev.t if start is None else start
            best = max(best, nxt.t - start)
        else:
            start = None
    return best
