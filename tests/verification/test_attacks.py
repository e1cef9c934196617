"""The people table and the attack and genuine presenters deliver what they claim, checked on
the real material with the real engine (MediaPipe landmarks read by ``verification.measures``).

The frame_metrics test of the old table (weak MediaPipe labels per action) and the dlib-landmark
turn check are replaced by the engine's own measures: the engine reads MediaPipe landmarks now,
and the weak labels miss Ed Markey's blink. The weak labels still cross-check turn directions
(their yaw has the opposite sign).
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt
import pytest

from verification.engine import FaceEngine
from verification.evaluation.attacks import (
    EVERYONE,
    EXTRAS,
    PEOPLE,
    ClipReplay,
    GenuinePresenter,
    MovedSheet,
    Person,
    Presenter,
    Segment,
    StillPhoto,
    fit_to_camera,
    load_clip,
    person,
    photo_of,
    plane_homography,
    play,
    read_photo,
)
from verification.measures import measure
from verification.types import Image

SMALL = (320, 240)
D12, KATIE = "liveportrait-d12", "sadtalker-katiehill"
Floats = npt.NDArray[np.float64]
STEP = 3  # every n-th frame of a segment is analysed (the extras: every 5th) ...
EDGE = 0.05  # ... and every frame of its first and last EDGE seconds
CLOSURE = (0.12, 0.2)  # ... and of a blink's closure: seconds before and after its peak

# The rules of verification.evaluation.people, in the engine's measures (degrees).
TURN, NOD = 20.0, 10.0  # an action's extent from neutral
BOUNDARY_YAW = 15.0  # a segment starts and ends this close to the neutral yaw
STILL = 10.0  # the neutral stretch's yaw and pitch stay this close to their medians
CLOSED, OPEN = 0.6, 0.75  # a blink: the eyes at most / again at least this of neutral
MOUTH, MOUTH_SECONDS, SMILE = 0.35, 0.3, 1.15


@dataclass(frozen=True, slots=True)
class Series:
    """The engine's measures of the face in a run of frames; yaw and pitch through a 3-sample
    median (the engine's PnP yaw flips on single frames of a still head)."""

    t: Floats
    ear: Floats
    mar: Floats
    smile: Floats
    yaw: Floats
    pitch: Floats

    def median(self, name: str) -> float:
        """Median of one measure."""
        return float(np.median(getattr(self, name)))


def _median3(values: Floats) -> Floats:
    padded = np.pad(values, 1, mode="edge")
    return np.asarray(np.median(np.lib.stride_tricks.sliding_window_view(padded, 3), axis=1))


@dataclass(frozen=True, slots=True)
class Span:
    """Frames to analyse: every ``step``-th one in ``[start, end)`` and every one in ``dense``."""

    start: float
    end: float
    step: int
    dense: tuple[tuple[float, float], ...] = ()

    def wants(self, t: float, index: int) -> bool:
        """Is the frame at ``t``, ``index`` frames after the span's first, analysed?"""
        inside = any(a - 1e-6 <= t < b - 1e-6 for a, b in self.dense)
        return index % self.step == 0 or inside


def _frames(path: Path, spans: list[Span]) -> Iterator[tuple[int, float, Image]]:
    """(span index, t, camera frame) for the frames each span wants."""
    first: dict[int, int] = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.time_base is not None:  # skip what no span needs (seeks to a keyframe)
            start = max(0.0, min(span.start for span in spans) - 0.5)
            container.seek(int(start / stream.time_base), stream=stream)
        for i, frame in enumerate(container.decode(stream)):
            t = float(frame.time or 0.0)
            wanted = [
                k
                for k, span in enumerate(spans)
                if span.start - 1e-6 <= t < span.end - 1e-6
                and span.wants(t, i - first.setdefault(k, i))
            ]
            if wanted:
                image = fit_to_camera(np.asarray(frame.to_ndarray(format="rgb24"), np.uint8))
                for k in wanted:
                    yield k, t, image
            if t > max(span.end for span in spans):
                return


def _measure(engine: FaceEngine, path: Path, spans: list[Span]) -> list[Series]:
    """The engine's measures in each span (frames without a measured face are left out)."""
    rows: list[list[list[float]]] = [[] for _ in spans]
    for k, t, image in _frames(path, spans):
        # Each frame detected afresh (no tracker): measures independent of the sampling.
        face = engine.analyse(image).face
        if face is not None and face.landmarks68 is not None:
            m = measure(face.landmarks68, image.shape[1], image.shape[0])
            rows[k].append([t, m.ear, m.mar, m.smile, m.yaw, m.pitch])
    series = []
    for span, run in zip(spans, rows, strict=True):
        assert len(run) >= 3, (path.name, span)
        t, ear, mar, smile, yaw, pitch = np.asarray(run, dtype=np.float64).T
        series.append(Series(t, ear, mar, smile, _median3(yaw), _median3(pitch)))
    return series


def _longest(mask: npt.NDArray[np.bool_], t: Floats) -> float:
    """Seconds covered by the longest run of True samples, at least (from its first sample to
    its last, plus one frame interval)."""
    frame = float(np.diff(t).min()) if len(t) > 1 else 0.0
    best, begun = 0.0, None
    for i, value in enumerate([*mask, False]):
        if value and begun is None:
            begun = i
        elif not value and begun is not None:
            best, begun = max(best, float(t[i - 1] - t[begun]) + frame), None
    return best


def _check_neutral(n: Series) -> None:
    assert n.ear.min() >= OPEN * n.median("ear"), "eyes shut in the neutral stretch"
    assert n.mar.max() <= MOUTH, "mouth open in the neutral stretch"
    assert np.abs(n.yaw - n.median("yaw")).max() <= STILL, "head turning in the neutral stretch"
    assert np.abs(n.pitch - n.median("pitch")).max() <= STILL, "head nodding in the neutral"


def _check_segment(action: str, s: Series, n: Series) -> None:
    yaw, pitch = s.yaw - n.median("yaw"), s.pitch - n.median("pitch")
    # Starts and ends near neutral: one of the first (last) two frames, 0.07–0.08 s apart,
    # within BOUNDARY_YAW (the engine's yaw flips on single frames), not pitched down, the
    # mouth not open.
    for edge in (slice(None, 2), slice(-2, None)):
        assert np.abs(yaw[edge]).min() <= BOUNDARY_YAW, f"yaw {yaw[edge]} at an end"
        assert pitch[edge].min() < NOD and s.mar[edge].min() <= MOUTH, "at an end"
    opened = _longest(s.mar >= MOUTH, s.t)
    if action != "open_mouth":  # talking opens the mouth for less
        assert opened < MOUTH_SECONDS, f"mouth open {opened:.2f} s"
    if action != "nod":
        assert pitch.max() < NOD, "a nod"
    if action not in ("turn_left", "turn_right"):
        assert np.abs(yaw).max() < TURN, "a turn"
    match action:
        case "turn_left":
            assert yaw.max() >= TURN and yaw.min() > -TURN
        case "turn_right":
            assert yaw.min() <= -TURN and yaw.max() < TURN
        case "blink":
            ear = s.ear / n.median("ear")
            assert ear.min() <= CLOSED and ear[0] >= OPEN and ear[-1] >= OPEN, ear
        case "open_mouth":
            assert opened >= MOUTH_SECONDS, f"mouth open only {opened:.2f} s"
        case "smile":
            smile = np.where(s.mar <= MOUTH, s.smile, 0.0) / n.median("smile")
            assert smile.max() >= SMILE
        case _:
            pytest.fail(f"no check for {action}")


def _spans(who: Person) -> tuple[list[Span], list[tuple[str, Segment]]]:
    """Every 3rd frame (extras: 5th; a short neutral stretch: 2nd) and every frame at a
    segment's ends and around a blink's closure, to keep the test quick."""
    step = STEP if who.usable else 2 * STEP - 1
    listed = [(action, s) for action, segments in who.actions.items() for s in segments]
    spans = [Span(who.neutral.start, who.neutral.end, step if who.neutral.duration > 0.5 else 2)]
    for action, s in listed:
        dense = [(s.start, s.start + EDGE), (s.end - EDGE, s.end)]
        if action == "blink":
            peak = s.start if s.peak is None else s.peak
            dense.append((peak - CLOSURE[0], peak + CLOSURE[1]))
        spans.append(Span(s.start, s.end, step, tuple(dense)))
    return spans, listed


@pytest.mark.parametrize("who", EVERYONE, ids=lambda p: p.name)
def test_segments_follow_the_rules_on_the_engine_measures(
    shared_data: Path, dlib_engine: FaceEngine, who: Person
) -> None:
    spans, listed = _spans(who)
    neutral, *segments = _measure(dlib_engine, shared_data / who.clip, spans)
    _check_neutral(neutral)
    assert who.neutral_yaw == pytest.approx(neutral.median("yaw"), abs=4.0)  # recorded
    for (action, segment), series in zip(listed, segments, strict=True):
        try:
            _check_segment(action, series, neutral)
        except AssertionError as err:
            raise AssertionError(f"{who.name} {action} {segment}: {err}") from err


def test_the_tables_hold_who_is_usable() -> None:
    from verification.evaluation import people

    assert people.PEOPLE is PEOPLE and people.person is person  # re-exported by attacks
    assert len({p.name for p in EVERYONE}) == len(EVERYONE)
    assert all(p.usable for p in PEOPLE) and not any(p.usable for p in EXTRAS)
    assert [p.name for p in PEOPLE] == [D12, KATIE, "sadtalker-edmarkey"]
    assert person(D12).vocabulary == ("turn_left", "turn_right", "open_mouth", "smile")
    assert Person("x", "c", 0.0, Segment(0, 1), {"blink": (Segment(1, 2),)}).usable is False
    with pytest.raises(ValueError, match="peak"):
        Segment(1.0, 2.0, peak=2.5)


@pytest.mark.parametrize("who", EVERYONE, ids=lambda p: p.name)
def test_photo_is_a_sharp_frontal_neutral_reference(
    shared_data: Path, dlib_engine: FaceEngine, who: Person
) -> None:
    # The frame shown at photo_t (the last one starting at or before it), as photo_of takes it.
    span = Span(max(0.0, who.photo_t - 0.1), who.photo_t + 2e-3, 1)
    *_, (_, _, photo) = _frames(shared_data / who.clip, [span])
    dlib_engine.reference_face(photo)  # raises on a poor reference (blur, pose, light, size)
    analysed = dlib_engine.analyse(photo).face
    assert analysed is not None and analysed.landmarks68 is not None
    m = measure(analysed.landmarks68, photo.shape[1], photo.shape[0])
    (neutral,) = _measure(
        dlib_engine, shared_data / who.clip, [Span(who.neutral.start, who.neutral.end, 2)]
    )
    # Frontal (as near the camera as the neutral stretch), eyes open, mouth closed or nearly,
    # not smiling (by the table's rule).
    assert abs(m.yaw) <= max(BOUNDARY_YAW, abs(who.neutral_yaw) + 5)
    assert m.ear >= OPEN * neutral.median("ear") and m.mar <= 0.3
    assert m.smile < SMILE * neutral.median("smile")


def _weak_yaw(data: Path, who: Person, segment: Segment) -> Floats:
    """``frame_metrics`` yaw in ``segment`` minus its neutral median (the opposite sign)."""
    name = who.clip.removeprefix("liveness_video/").replace("/", "__").rsplit(".", 1)[0]
    with (data / "liveness_video" / "frame_metrics" / f"{name}.csv").open() as handle:
        rows = [
            (float(r["t_sec"]), float(r["yaw_deg"])) for r in csv.DictReader(handle) if r["yaw_deg"]
        ]
    t, yaw = np.asarray(rows).T
    base = np.median(yaw[(t >= who.neutral.start) & (t < who.neutral.end)])
    return np.asarray(yaw[(t >= segment.start) & (t < segment.end)] - base)


@pytest.mark.parametrize(
    "who",
    [p for p in EVERYONE if {"turn_left", "turn_right"} & set(p.actions)],
    ids=lambda p: p.name,
)
def test_turn_directions_agree_with_the_weak_labels(shared_data: Path, who: Person) -> None:
    for action, sign in (("turn_left", -1.0), ("turn_right", 1.0)):  # frame_metrics: + = right
        for segment in who.actions.get(action, ()):
            yaw = sign * _weak_yaw(shared_data, who, segment)
            assert yaw.max() >= 15 and yaw.min() > -8, (action, segment)


def test_sheet_frames_are_exact_homographies_of_the_photo(shared_data: Path) -> None:
    clip = load_clip(shared_data / PEOPLE[0].clip, SMALL)
    photo = photo_of(PEOPLE[0], clip)
    sheet = MovedSheet(photo, random.Random(3), size=SMALL, noise=0.0)
    moved = 0.0
    for t, frame in play(sheet, fps=10, duration=1.0):
        expected = cv2.warpPerspective(
            sheet.source, sheet.homography(t), SMALL, borderValue=(118,) * 3
        )
        assert np.array_equal(frame, expected)
        moved = max(moved, float(np.abs(sheet.homography(t) - np.eye(3)).max()))
    assert moved > 0.05  # it does move


def test_plane_homography_is_the_projection_of_a_turned_plane() -> None:
    width, height = 640, 480
    h = plane_homography(25.0, -10.0, (30.0, 12.0), (width, height))
    focal = float(width)
    yaw, pitch = np.radians(25.0), np.radians(-10.0)
    ry = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    rx = np.array(
        [[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]]
    )
    for u, v in [(0, 0), (639, 0), (320, 240), (100, 400)]:
        point = np.array([(u - width / 2), (v - height / 2), focal])  # on the sheet at depth f
        centre = np.array([0, 0, focal])
        moved = ry @ rx @ (point - centre) + centre + np.array([30.0, 12.0, 0.0])
        projected = moved[:2] / moved[2] * focal + np.array([width / 2, height / 2])
        mapped = h @ np.array([u, v, 1.0])
        assert mapped[:2] / mapped[2] == pytest.approx(projected, abs=1e-6)
    assert plane_homography(0, 0, (0, 0), (width, height)) == pytest.approx(np.eye(3))


def test_still_photo_and_screen_photo_differ_only_by_noise(shared_data: Path) -> None:
    screen = read_photo(shared_data / "presentation_attack/silent_face/image_F2.jpg")
    assert screen.shape[:2] == (640, 480)  # EXIF orientation applied: portrait, upright
    still = StillPhoto(screen, random.Random(1), kind="screen_photo", size=SMALL)
    frames = [f for _, f in play(still, 10, 0.3)]
    assert len({f.tobytes() for f in frames}) == 3  # hashes differ
    assert max(np.abs(f.astype(int) - still.source.astype(int)).mean() for f in frames) < 2


def test_replay_loops_the_clip_from_its_start(shared_data: Path) -> None:
    clip = load_clip(shared_data / PEOPLE[0].clip, SMALL)
    replay = ClipReplay(clip, random.Random(2), noise=0.0)
    assert np.array_equal(replay.frame(0.0, "blink"), clip.frames[0])
    later = clip.duration + 0.4
    assert np.array_equal(replay.frame(later, None), clip.at(0.4))


def test_genuine_presenter_reacts_after_a_human_delay(shared_data: Path) -> None:
    who = person(KATIE)
    clip = load_clip(shared_data / who.clip, SMALL)
    presenter = GenuinePresenter(who, clip, random.Random(5), noise=0.0)
    presenter.frame(0.0, "turn_left")
    ((action, start, segment),) = presenter.answers
    assert action == "turn_left" and 0.5 <= start <= 1.5
    assert who.neutral.start <= presenter.source_time(start - 0.05) <= who.neutral.end
    assert presenter.source_time(start + 0.3) == pytest.approx(segment.start + 0.3)
    after = start + segment.duration + 0.2
    assert who.neutral.start <= presenter.source_time(after) <= who.neutral.end
    presenter.frame(0.5, "nod")  # not in the clip: no answer
    assert len(presenter.answers) == 1


def test_attacks_end_to_end_through_engine_and_attempt_are_not_accepted(
    shared_data: Path,
) -> None:
    from verification.challenges import Action
    from verification.config import build_engine
    from verification.engine import encode_jpeg
    from verification.evaluation.simulator import simulate

    engine = build_engine("dlib")
    rng = random.Random(11)
    who, other = person(D12), person(KATIE)
    clip = load_clip(shared_data / who.clip, SMALL)
    photo = photo_of(who, clip)
    reference = engine.enrol(encode_jpeg(photo))
    presenters: list[Presenter] = [
        StillPhoto(photo, rng, size=SMALL),
        MovedSheet(photo, rng, size=SMALL),
        ClipReplay(clip, rng),
        GenuinePresenter(other, load_clip(shared_data / other.clip, SMALL), rng, kind="other"),
    ]
    vocabulary = [Action(a) for a in who.vocabulary]
    for presenter in presenters:
        outcome = simulate(engine, reference, presenter, vocabulary, rng, fps=5, max_seconds=20)
        assert not outcome.accepted, outcome
        assert outcome.frames > 0
