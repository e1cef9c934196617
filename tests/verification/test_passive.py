"""Passive checks on real clips and on attacks built from real frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.verification import clipdata as cd
from verification.attempt import (
    Attempt,
    AttemptConfig,
    AttemptResult,
    AttemptState,
    FrameObservation,
    Sample,
)
from verification.challenges import draw_challenges
from verification.measures import Baseline, measure, relative
from verification.passive import (
    PassiveConfig,
    analyse,
    check_camera_label,
    check_frozen,
    check_identity,
    check_pad,
    check_planarity,
    nose_parallax,
    position_autocorrelation,
)
from verification.types import Image, Points

CFG = PassiveConfig(identity_min_similarity=0.5)


def samples_from(
    times: list[float], marks: list[Points | None], size: tuple[int, int], hashes: list[str]
) -> list[Sample]:
    """Samples as an attempt keeps them, with a baseline from the first five faces."""
    faces = [measure(p, *size) if p is not None else None for p in marks]
    base = Baseline.from_frames([m for m in faces if m is not None][:5])
    out = []
    for t, p, m, h in zip(times, marks, faces, hashes, strict=True):
        rel = relative(t, m, base) if m is not None else None
        out.append(Sample(t, FrameObservation(*size, p, frame_hash=h), m, rel))
    return out


def clip_samples(name: str, t0: float = 0.0, t1: float = 99.0) -> list[Sample]:
    clip = cd.cached_clip(name)
    idx = clip.span(t0, t1)
    return samples_from(
        [clip.times[i] for i in idx],
        [clip.landmarks[i] for i in idx],
        clip.size,
        [clip.hashes[i] for i in idx],
    )


def sheet_turn(image: Image, degrees: float) -> Image:
    """``image`` as a flat print rotated ``degrees`` about its vertical axis, seen by a camera
    whose focal length is the image width (plane at that distance)."""
    h, w = image.shape[:2]
    f, cx, cy, phi = float(w), w / 2, h / 2, np.radians(degrees)
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    moved = []
    for u, v in corners:
        x, y = u - cx, v - cy
        z = f + x * np.sin(phi)
        moved.append([cx + f * x * np.cos(phi) / z, cy + f * y / z])
    matrix = cv2.getPerspectiveTransform(corners, np.array(moved, dtype=np.float32))
    return np.ascontiguousarray(cv2.warpPerspective(image, matrix, (w, h)))


@pytest.fixture(scope="module")
def warped_photo_samples() -> list[Sample]:
    """A still photo of the customer turned as a sheet: 0 → 40° → 0 → -40° → 0."""
    photo = cd.read_frame(cd.data_root() / cd.SADTALKER, cd.NEUTRAL_AT)
    marker = cd.Landmarker()
    angles = [0, 0, 0, 0, 0, 10, 20, 30, 40, 40, 30, 20, 10, 0, -10, -20, -30, -40, -40, -20, 0]
    frames = [sheet_turn(photo, a) for a in angles]
    marks = [marker.detect(f) for f in frames]
    size = (photo.shape[1], photo.shape[0])
    return samples_from(
        [i / 10 for i in range(len(angles))], marks, size, [cd.frame_hash(f) for f in frames]
    )


# -- 3-D consistency -------------------------------------------------------------------------


def test_a_real_head_turn_is_not_planar() -> None:
    samples = clip_samples(cd.SADTALKER)
    assert max(abs(s.relative.yaw) for s in samples if s.relative) > 20
    assert check_planarity(samples, CFG) == []


def test_a_photo_turned_as_a_sheet_is_planar(warped_photo_samples: list[Sample]) -> None:
    turned = [s for s in warped_photo_samples if s.relative and abs(s.relative.yaw) >= 12]
    assert turned, "the warp should look like a head turn to the pose solver"
    findings = check_planarity(warped_photo_samples, CFG)
    assert [f.code for f in findings] == ["liveness.planar_motion"]
    assert float(findings[0].detail["parallax"]) < 0.025  # policy limit 0.03; real turns > 0.06


def test_nose_parallax_separates_head_from_sheet(warped_photo_samples: list[Sample]) -> None:
    front = cd.real_face(cd.NEUTRAL_AT)[0]
    head = nose_parallax(front, cd.real_face(cd.TURN_RIGHT_AT)[0])
    marks = [s.observation.landmarks68 for s in warped_photo_samples]
    sheet = max(nose_parallax(marks[0], m) for m in marks if m is not None)  # type: ignore[arg-type]
    assert head > 0.08 and sheet < 0.025


def test_no_turn_no_planarity_verdict() -> None:
    assert check_planarity(clip_samples(cd.S18), CFG) == []


# -- frozen frames ---------------------------------------------------------------------------


def test_a_repeated_frame_is_frozen_and_meets_no_challenge() -> None:
    clip = cd.cached_clip(cd.SADTALKER)
    i = clip.index_at(cd.NEUTRAL_AT)
    still = FrameObservation(*clip.size, clip.landmarks[i], frame_hash=clip.hashes[i])
    attempt = Attempt(draw_challenges(3), AttemptConfig())
    attempt.start(0.0)
    t = 0.0
    while attempt.state in (AttemptState.BASELINE, AttemptState.CHALLENGE) and t < 20:
        # As the server samples: every camera frame while a blink is asked, else 10 a second.
        t = round(t + (1 / 30 if attempt.camera_rate else 0.1), 3)
        attempt.observe(t, still)
    result = attempt.result()
    assert result.state is AttemptState.TIMED_OUT
    assert result.reason == "liveness.challenge_timeout"
    assert all(c.met_at is None for c in result.challenges)
    codes = [f.code for f in check_frozen(result.samples, CFG)]
    assert codes == ["liveness.frozen"]


def test_a_still_photo_with_sensor_noise_is_frozen_by_its_landmarks() -> None:
    pts, size = cd.real_face(cd.NEUTRAL_AT)
    rng = np.random.default_rng(3)
    marks: list[Points | None] = [
        pts + rng.normal(0, 0.05, pts.shape).astype(np.float32) for _ in range(20)
    ]
    samples = samples_from([i / 10 for i in range(20)], marks, size, [str(i) for i in range(20)])
    assert [f.code for f in check_frozen(samples, CFG)] == ["liveness.frozen"]


@pytest.mark.parametrize("name", [cd.S18, cd.S20, cd.D9])
def test_real_near_still_faces_are_not_frozen(name: str) -> None:
    samples = clip_samples(name)
    assert check_frozen(samples, CFG) == []
    faces = [s for s in samples if s.observation.landmarks68 is not None]
    assert position_autocorrelation(faces) > 0.6  # a live head sways smoothly


def test_a_noisy_still_photo_is_frozen_by_the_whiteness_of_its_jitter() -> None:
    """Sensor noise on a real frame, re-landmarked each time: the jitter is big (> the motion
    level) but uncorrelated from frame to frame."""
    clip = cd.cached_clip(cd.S20)
    image = cd.read_frame(cd.data_root() / cd.S20, 5.0)
    rng = np.random.default_rng(5)
    marker = cd.Landmarker()
    marks: list[Points | None] = []
    for _ in range(45):
        noisy = np.clip(image + rng.normal(0, 1.5, image.shape), 0, 255).astype(np.uint8)
        marks.append(marker.detect(noisy))
    assert all(m is not None for m in marks) and clip.size == (image.shape[1], image.shape[0])
    samples = samples_from(
        [i / 10 for i in range(45)], marks, clip.size, [str(i) for i in range(45)]
    )
    (finding,) = check_frozen(samples, CFG)
    assert finding.code == "liveness.frozen"
    assert float(finding.detail["motionless_s"]) < 1.0  # the old motion level misses it
    assert float(finding.detail["motion_autocorr"]) < 0.3
    assert check_frozen(samples[:30], CFG) == []  # too few frames to judge


# -- identity, PAD, camera -------------------------------------------------------------------


def test_identity_consistency() -> None:
    assert check_identity([0.9, 0.8, 0.7], CFG) == []
    changed = check_identity([0.9, 0.2, 0.8], CFG)
    assert [f.code for f in changed] == ["identity.changed"]
    assert changed[0].detail["min_similarity"] == 0.2
    assert [f.code for f in check_identity([], CFG)] == ["identity.unchecked"]
    assert [f.code for f in check_identity([0.9], PassiveConfig())] == ["identity.unchecked"]


def test_pad_scores_are_aggregated_by_median() -> None:
    assert check_pad([], CFG) == []
    assert check_pad([0.99, 0.1, 0.95], CFG) == []  # one bad frame does not decide
    assert [f.code for f in check_pad([0.1, 0.2, 0.9], CFG)] == ["pad.spoof"]
    assert [f.code for f in check_pad([0.6, 0.7, 0.9], CFG)] == ["pad.uncertain"]


@pytest.mark.parametrize(
    ("label", "hint"),
    [
        ("OBS Virtual Camera", True),
        ("ManyCam Video Source", True),
        ("fake_device_0", True),
        ("Snap Camera", True),
        ("FaceTime HD Camera (Built-in) (05ac:8514)", False),
        ("Integrated Webcam", False),
        ("", False),
        (None, False),
    ],
)
def test_camera_label_is_a_weak_hint(label: str | None, hint: bool) -> None:
    codes = [f.code for f in check_camera_label(label)]
    assert codes == (["camera.virtual_hint"] if hint else [])


def test_analyse_collects_every_finding(warped_photo_samples: list[Sample]) -> None:
    result = AttemptResult(
        nonce="n" * 22,
        state=AttemptState.ANALYSING,
        reason=None,
        started_at=0.0,
        ended_at=None,
        baseline=None,
        challenges=(),
        events=(),
        samples=tuple(warped_photo_samples),
    )
    codes = {f.code for f in analyse(result, CFG, [0.9, 0.3], "OBS Virtual Camera")}
    assert codes == {"liveness.planar_motion", "identity.changed", "camera.virtual_hint"}
