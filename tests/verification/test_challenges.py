"""Challenge draw and the action detectors on real clip segments."""

from __future__ import annotations

import collections
import itertools
import random
from collections.abc import Sequence

import cv2
import numpy as np
import pytest

from tests.verification import clipdata as cd
from verification.challenges import (
    DEFAULT_VOCABULARY,
    PAUSE,
    POSE,
    Action,
    Challenge,
    Detection,
    detect,
    detect_all,
    draw_actions,
    draw_challenges,
    forbidden_before,
    occurrences,
)
from verification.measures import Baseline, Relative, measure, relative


def relative_series(clip: cd.ClipFrames, baseline_frames: int = 5) -> list[Relative]:
    """Relative measures of every face frame, against the clip's first frames."""
    frames = [
        (t, measure(p, *clip.size))
        for t, p in zip(clip.times, clip.landmarks, strict=True)
        if p is not None
    ]
    base = Baseline.from_frames([m for _, m in frames[:baseline_frames]])
    return [relative(t, m, base) for t, m in frames]


def found(name: str, action: Action, step: int = 2) -> list[Detection]:
    return occurrences(action, relative_series(cd.cached_clip(name, step)))


# -- the draw --------------------------------------------------------------------------------


def test_draw_has_no_immediate_repeats_and_turns_one_way_only() -> None:
    rng = random.Random(7)
    directions = collections.Counter()
    for _ in range(500):
        actions = draw_actions(5, rng=rng)
        assert all(a != b for a, b in itertools.pairwise(actions))
        turns = {a for a in actions if a in (Action.TURN_LEFT, Action.TURN_RIGHT)}
        assert len(turns) == 1  # a pose action in every plan, never both directions
        directions.update(turns)
    assert min(directions.values()) > 200  # both directions drawn, about equally
    # With a vocabulary of turns and one more action, plans still turn one way only.
    few = {
        draw_actions(3, [Action.TURN_LEFT, Action.TURN_RIGHT, Action.BLINK], rng)
        for _ in range(200)
    }
    assert few == {
        (Action.TURN_LEFT, Action.BLINK, Action.TURN_LEFT),
        (Action.TURN_RIGHT, Action.BLINK, Action.TURN_RIGHT),
        (Action.BLINK, Action.TURN_LEFT, Action.BLINK),
        (Action.BLINK, Action.TURN_RIGHT, Action.BLINK),
    }


def test_draw_covers_the_vocabulary_and_allows_a_swing_when_nothing_else_is_left() -> None:
    rng = random.Random(1)
    seen = {a for _ in range(200) for a in draw_actions(3, rng=rng)}
    assert seen == set(DEFAULT_VOCABULARY)  # no nod by default: no dev clip holds one
    assert Action.NOD in {a for _ in range(200) for a in draw_actions(3, list(Action), rng)}
    only_turns = draw_actions(4, [Action.TURN_LEFT, Action.TURN_RIGHT], rng)
    assert only_turns in (
        (Action.TURN_LEFT, Action.TURN_RIGHT) * 2,
        (Action.TURN_RIGHT, Action.TURN_LEFT) * 2,
    )


def test_plan_has_a_fresh_nonce_and_time_limits() -> None:
    a, b = draw_challenges(3), draw_challenges(3, time_limit=5.0)  # SystemRandom by default
    assert a.nonce != b.nonce and len(a.nonce) >= 16
    assert len(a.challenges) == 3 and {c.time_limit for c in b.challenges} == {5.0}


def test_each_challenge_gets_a_random_hold_still_pause() -> None:
    plans = [draw_challenges(3) for _ in range(50)]  # CSPRNG
    pauses = [c.pause for p in plans for c in p.challenges]
    low, high = PAUSE
    assert all(low <= x <= high for x in pauses) and len(set(pauses)) > 100
    seeded = draw_challenges(3, rng=random.Random(4), pause=(1.0, 2.0))
    again = draw_challenges(3, rng=random.Random(4), pause=(1.0, 2.0))
    assert [c.pause for c in seeded.challenges] == [c.pause for c in again.challenges]
    assert all(1.0 <= c.pause <= 2.0 for c in seeded.challenges)
    assert {c.pause for c in draw_challenges(3, pause=(0.0, 0.0)).challenges} == {0.0}
    with pytest.raises(ValueError, match="pause range"):
        draw_challenges(3, pause=(1.0, 0.5))
    with pytest.raises(ValueError, match="pause"):
        Challenge(Action.BLINK, 5.0, -1.0)


def test_what_may_not_begin_before_the_instruction() -> None:
    # A talking head bobs: a nod in the pause is not held against anybody (it is not asked for).
    big = {Action.TURN_LEFT, Action.TURN_RIGHT, Action.OPEN_MOUTH}
    assert forbidden_before(Action.BLINK) == big  # nobody holds back blinks
    assert forbidden_before(Action.SMILE) == big | {Action.SMILE}
    assert forbidden_before(Action.TURN_LEFT) == big


@pytest.mark.parametrize("n", [0, 1, 2])
def test_fewer_than_three_challenges_is_refused(n: int) -> None:
    with pytest.raises(ValueError, match="at least 3"):
        draw_challenges(n)


def test_a_single_action_vocabulary_cannot_avoid_repeats() -> None:
    with pytest.raises(ValueError, match="two actions"):
        draw_actions(3, [Action.BLINK])


# -- detectors on real clips -----------------------------------------------------------------


def test_blink_detector_finds_the_eight_deliberate_closures() -> None:
    blinks = found(cd.BLINK, Action.BLINK)
    # closure onsets checked on the frames (MediaPipe's weak labels agree within 0.1 s)
    expected = [0.42, 1.68, 3.48, 4.65, 5.78, 9.26, 10.06, 11.02]
    assert len(blinks) == 8
    assert np.allclose([b.start for b in blinks], expected, atol=0.15)
    assert all(b.end > b.start for b in blinks)


def test_blink_detector_finds_natural_blinks_on_the_neutral_webcam_clip() -> None:
    blinks = found(cd.D9, Action.BLINK)
    assert len(blinks) >= 8
    assert any(abs(b.start - 9.77) < 0.2 for b in blinks)


def test_turns_are_in_the_customers_terms_on_sadtalker() -> None:
    series = relative_series(cd.cached_clip(cd.SADTALKER))
    right = detect(Action.TURN_RIGHT, series)
    left = detect(Action.TURN_LEFT, series)
    assert right is not None and 1.2 < right.start < 1.6 and right.peak > 18
    assert left is not None and 6.6 < left.start < 7.0 and left.peak > 18


def test_d12_turns_to_the_customers_right() -> None:
    turns = found(cd.D12, Action.TURN_RIGHT, step=1)
    assert turns and 2.9 < turns[0].start < 3.6
    assert not found(cd.D12, Action.TURN_LEFT, step=1)


def test_a_mirrored_picture_swaps_left_and_right() -> None:
    """The server must not mirror: the same turn, mirrored, reads as the other direction."""
    marker = cd.Landmarker()
    frames = list(cd.decode(cd.data_root() / cd.SADTALKER, step=3))
    picked = [(t, img) for t, img in frames if t < 0.5 or 6.5 < t < 7.8]
    mirrored = [(t, marker.detect(np.ascontiguousarray(cv2.flip(img, 1)))) for t, img in picked]
    size = (picked[0][1].shape[1], picked[0][1].shape[0])
    series = [(t, measure(p, *size)) for t, p in mirrored if p is not None]
    base = Baseline.from_frames([m for t, m in series if t < 0.5])
    window = [relative(t, m, base) for t, m in series]
    assert detect(Action.TURN_RIGHT, window) is not None
    assert detect(Action.TURN_LEFT, window) is None


def test_open_mouth_on_d18_twice_and_not_a_smile() -> None:
    mouths = found(cd.D18, Action.OPEN_MOUTH)
    assert [round(m.start) for m in mouths] == [2, 4]
    assert not found(cd.D18, Action.SMILE)


def test_smile_on_the_laughing_d12_clip() -> None:
    smiles = found(cd.D12, Action.SMILE)
    assert smiles and smiles[0].start < 1.0 and smiles[0].peak > 1.15


@pytest.mark.parametrize("name", [cd.S18, cd.S20])
def test_near_still_faces_do_nothing_but_blink(name: str) -> None:
    actions = {d.action for a in Action for d in found(name, a)}
    assert actions <= {Action.BLINK}  # both clips contain natural blinks (checked on frames)


def test_a_still_photo_performs_nothing() -> None:
    clip = cd.cached_clip(cd.SADTALKER)
    pts = clip.landmarks[clip.index_at(cd.NEUTRAL_AT)]
    assert pts is not None
    m = measure(pts, *clip.size)
    base = Baseline.from_frames([m])
    window = [relative(i / 10, m, base) for i in range(100)]
    assert detect_all(window) == []


# -- detector rules on scripted sequences -----------------------------------------------------


def _series(**tracks: Sequence[float]) -> list[Relative]:
    n = len(next(iter(tracks.values())))
    neutral = {"ear": 1.0, "mar": 0.0, "smile": 1.0, "yaw": 0.0, "pitch": 0.0, "roll": 0.0}
    return [
        Relative(t=i / 10, size=1.0, **{k: tracks.get(k, [v] * n)[i] for k, v in neutral.items()})
        for i in range(n)
    ]


def test_nod_is_pitch_down_then_back_up() -> None:
    nod = _series(pitch=[0, 0, 6, 12, 14, 8, 2, 0])
    assert detect(Action.NOD, nod) is not None
    down_only = _series(pitch=[0, 0, 6, 12, 14, 14, 14, 14])
    assert detect(Action.NOD, down_only) is None
    blink_jerk = _series(pitch=[0, 0, 12, 0, 0])  # one frame: a blink moves the brows
    assert detect(Action.NOD, blink_jerk) is None


def test_an_action_under_way_when_the_window_opens_does_not_count() -> None:
    already_turned = _series(yaw=[25, 25, 25, 10, 0])
    assert detect(Action.TURN_LEFT, already_turned) is None
    eyes_already_shut = _series(ear=[0.3, 0.3, 1.0, 1.0])
    assert detect(Action.BLINK, eyes_already_shut) is None


def test_turn_must_be_held_and_blink_must_reopen() -> None:
    assert detect(Action.TURN_LEFT, _series(yaw=[0, 25, 0, 0])) is None  # one-frame glitch
    assert detect(Action.TURN_LEFT, _series(yaw=[0, 20, 25, 0])) is None  # 0.1 s: too short
    assert detect(Action.TURN_LEFT, _series(yaw=[0, 20, 25, 22, 0])) is not None
    assert detect(Action.BLINK, _series(ear=[1.0, 0.4, 0.4])) is None  # not reopened yet
    assert detect(Action.BLINK, _series(ear=[1.0, 0.4, 0.9])) is not None
    long_closure = _series(ear=[1.0] + [0.4] * 40 + [1.0])
    assert detect(Action.BLINK, long_closure) is None  # 4 s with eyes shut is not a blink


def test_a_wide_open_mouth_is_not_a_smile() -> None:
    laugh = _series(smile=[1, 1, 1.3, 1.3, 1.3, 1.3, 1], mar=[0, 0, 0.6, 0.6, 0.6, 0.6, 0])
    assert detect(Action.SMILE, laugh) is None
    assert detect(Action.OPEN_MOUTH, laugh) is not None


def test_no_plan_can_be_met_by_natural_blinking_smiling_or_talking() -> None:
    # A replayed talking head blinks, smiles and opens its mouth on its own: every plan holds a
    # head movement, which the recording would have to make in the instruction's window.
    rng = random.Random(5)
    for vocabulary in (DEFAULT_VOCABULARY, list(Action), [Action.BLINK, Action.SMILE, Action.NOD]):
        for _ in range(2000):
            assert set(draw_actions(3, vocabulary, rng)) & POSE
    with pytest.raises(ValueError, match="head movement"):
        draw_actions(3, [Action.BLINK, Action.SMILE, Action.OPEN_MOUTH], rng)
    # ... unless a test asks for such plans (its fake camera loops a clip of blinks and smiles).
    loop = draw_actions(3, [Action.BLINK, Action.SMILE], rng, replayable=True)
    assert set(loop) == {Action.BLINK, Action.SMILE}
