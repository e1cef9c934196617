"""Active-liveness challenges: the vocabulary, a CSPRNG draw, and detectors over relative measures.

Every detector looks at a *window* of :class:`~verification.measures.Relative` samples (the face
frames since the challenge was shown) and finds an **excursion**: a run of samples beyond a
"hold" level that reaches a "peak" level somewhere inside. An excursion only counts if the sample
just before it was *not* beyond the hold level, so an action already under way when the window
opened (the head still turned from the previous challenge, an action done before the instruction
appeared) is not credited.

Directions are the customer's own: TURN_LEFT means the customer turns to *their* left, which in
the camera's (not mirrored) picture moves the nose towards the image's right, i.e. yaw > 0
(see :mod:`verification.measures`).
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from random import Random

from verification.measures import Relative


class Action(StrEnum):
    """What the customer is asked to do (the value is the wire/i18n key)."""

    BLINK = "blink"
    TURN_LEFT = "turn_left"
    TURN_RIGHT = "turn_right"
    OPEN_MOUTH = "open_mouth"
    SMILE = "smile"
    NOD = "nod"


VOCABULARY: tuple[Action, ...] = tuple(Action)
# Head movements: a recording of somebody blinking, smiling and talking performs expressions
# on its own schedule, but it does not turn its head to order. Every plan holds at least one.
POSE: frozenset[Action] = frozenset({Action.TURN_LEFT, Action.TURN_RIGHT, Action.NOD})
# What the server draws from unless told otherwise. The nod is left out: no dev clip holds a
# real nod, so its detector is unmeasured (a talking head's bob reads as one); it stays
# available through CLOUDBRANCH_VERIFY_VOCABULARY.
DEFAULT_VOCABULARY: tuple[Action, ...] = tuple(a for a in Action if a is not Action.NOD)
_OPPOSITE = {Action.TURN_LEFT: Action.TURN_RIGHT, Action.TURN_RIGHT: Action.TURN_LEFT}
_TURNS = frozenset({Action.TURN_LEFT, Action.TURN_RIGHT})

# Actions that, performed *instead of* the one asked for, fail the challenge: clear head turns
# (at the stricter ``STRICT`` levels), which a replayed recording is full of. Expressions and
# small head movements come with every instruction people follow (eyes close inside a grimace,
# a smile follows a blink, talking opens the mouth and bobs the head): they never count
# against the customer.
_CONFLICTS: dict[Action, frozenset[Action]] = {
    Action.BLINK: _TURNS,
    Action.TURN_LEFT: frozenset({Action.TURN_RIGHT}),
    Action.TURN_RIGHT: frozenset({Action.TURN_LEFT}),
    Action.OPEN_MOUTH: _TURNS,
    Action.SMILE: _TURNS,
    Action.NOD: _TURNS,
}


def conflicts(action: Action) -> frozenset[Action]:
    """Actions that fail a challenge for ``action`` when they come first."""
    return _CONFLICTS[action]


# Deliberate movements: a customer told to hold still and wait for the instruction makes none.
_DELIBERATE = frozenset({Action.TURN_LEFT, Action.TURN_RIGHT, Action.OPEN_MOUTH})


def forbidden_before(action: Action) -> frozenset[Action]:
    """Actions that fail the attempt when they begin in the "hold still" pause before the
    instruction for ``action`` appears: a clear head turn or a wide-open mouth, and ``action``
    itself (a recording performing it on its own schedule), except a blink, which nobody can
    hold back for two seconds."""
    return _DELIBERATE | ({action} - {Action.BLINK})


# Seconds of "hold still" before each instruction appears, drawn per challenge with the plan.
# A replayed recording does not know when the instruction comes: any deliberate movement in the
# pause fails the attempt (``liveness.moved_before_prompt``). Long pauses catch more replays but
# every second of them is a second the customer waits. Plans turn one way only and an unasked
# held turn fails, so the pause is not what stops replays: with (0.2, 0.5) every simulated
# replay, swap and talker was still stopped (bench/eval_liveness.py seed 1, 42 attempts per
# attack, dlib and onnx) and the genuine median completion fell from 6.05 s (0.3, 0.7) to
# 5.87 s (dlib, 60 attempts).
PAUSE = (0.2, 0.5)


@dataclass(frozen=True, slots=True)
class Challenge:
    """One instruction with its time limit (seconds from when it is shown) and the "hold still"
    pause (seconds) before it is shown."""

    action: Action
    time_limit: float
    pause: float = 0.0

    def __post_init__(self) -> None:
        if self.time_limit <= 0:
            raise ValueError(f"time limit must be positive, got {self.time_limit}")
        if not 0 <= self.pause <= 10:
            raise ValueError(f"pause must be within 0–10 s, got {self.pause}")


@dataclass(frozen=True, slots=True)
class ChallengePlan:
    """The drawn sequence and its nonce (kept in evidence; ties the attempt to this draw)."""

    nonce: str
    challenges: tuple[Challenge, ...]

    def __post_init__(self) -> None:
        if len(self.challenges) < 1:
            raise ValueError("a plan needs at least one challenge")
        if len(self.nonce) < 16:
            raise ValueError("nonce too short")


def _plans(n: int, choices: Sequence[Action], pose: bool = True) -> list[tuple[Action, ...]]:
    """Every sequence of ``n`` actions with a head movement (unless ``pose`` is False) and no
    action twice in a row; with turns one way only when the vocabulary leaves such plans (else
    without a left-right swing, else any)."""
    plans = [
        p
        for p in itertools.product(choices, repeat=n)
        if (not pose or any(a in POSE for a in p)) and all(a != b for a, b in itertools.pairwise(p))
    ]
    one_way = [p for p in plans if not _TURNS <= set(p)]
    calm = [p for p in plans if all(_OPPOSITE.get(a) != b for a, b in itertools.pairwise(p))]
    return one_way or calm or plans


def draw_actions(
    n: int,
    vocabulary: Sequence[Action] = DEFAULT_VOCABULARY,
    rng: Random | None = None,
    *,
    replayable: bool = False,
) -> tuple[Action, ...]:
    """``n`` actions from ``vocabulary``, uniformly among the plans that hold at least one
    head movement (:data:`POSE`), never the same action twice in a row and, when the vocabulary
    leaves another choice, turns one way only: left or right, never both in one plan.

    One direction per plan because a recording of somebody moving their head holds both: it
    turns, comes back and sways the other way. A clear turn that was not asked for fails the
    attempt wherever it falls (a wrong action inside a challenge, a movement before the prompt
    in a pause), so a replay must now hold its turns exactly where the plan asks for them and
    none the other way in between; before, plans of a turn, another action and the opposite
    turn were met by a clip's own right-then-left (bench/eval_liveness.py, replays). For the
    customer it is also easier: no left-right confusion inside one check. A vocabulary of turns
    alone falls back to no turn straight after a turn the other way, then to any plan.

    A vocabulary without a head movement is refused: plans of blinks, smiles and open mouths
    alone are met by a recording of somebody talking (bench/eval_liveness.py, replays).
    Repeats further apart are allowed on purpose: plans of distinct actions are permutations of
    what a clip contains, which a replayed clip matches more often. ``replayable`` lifts the
    head-movement rule: a test setting only, for browser tests whose fake camera loops a clip
    and so cannot answer a prompt (``CLOUDBRANCH_VERIFY_REPLAYABLE_PLANS``)."""
    choices = tuple(dict.fromkeys(vocabulary))
    if not 1 <= n <= 6:
        raise ValueError(f"n must be within 1–6, got {n}")
    if len(choices) < 2 and n > 1:
        raise ValueError("the vocabulary needs at least two actions to avoid repeats")
    if not replayable and not any(a in POSE for a in choices):
        raise ValueError("the vocabulary needs a head movement (turn_left, turn_right or nod)")
    pick = rng or secrets.SystemRandom()
    return pick.choice(_plans(n, choices, pose=not replayable))


def draw_challenges(
    n: int = 3,
    vocabulary: Sequence[Action] = DEFAULT_VOCABULARY,
    rng: Random | None = None,
    time_limit: float = 8.0,
    min_challenges: int = 3,
    pause: tuple[float, float] = PAUSE,
    *,
    replayable: bool = False,
) -> ChallengePlan:
    """A fresh plan: ``n`` (≥ ``min_challenges``) challenges, each with a "hold still" pause
    drawn uniformly from ``pause`` (seconds; ``(0, 0)``: none), and a ``secrets`` nonce.

    Actions and pauses come from ``rng`` when given (tests, the seeded benchmark), otherwise
    from the operating system's CSPRNG (:class:`secrets.SystemRandom`)."""
    if n < min_challenges:
        raise ValueError(f"at least {min_challenges} challenges are required, got {n}")
    low, high = pause
    if not 0 <= low <= high:
        raise ValueError(f"invalid pause range {pause}")
    pick = rng or secrets.SystemRandom()
    actions = draw_actions(n, vocabulary, pick, replayable=replayable)
    return ChallengePlan(
        nonce=secrets.token_urlsafe(16),
        challenges=tuple(
            Challenge(a, time_limit, round(pick.uniform(low, high), 3)) for a in actions
        ),
    )


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Levels of each detector, relative to the customer's own baseline, and the shortest
    durations (seconds, not samples: frames are analysed at 10 fps, and at the camera's rate
    while a blink is asked). Measured on every clip of ``liveness_video`` with MediaPipe
    landmarks (``bench/eval_actions.py``)."""

    # A blink is judged against the eyes' own open level just before it (the median of the
    # ``blink_reference`` seconds before the closure), not against the baseline only: a smile
    # or a grimace narrows the eyes, and a blink inside it is still a blink. MediaPipe's lids
    # close to 0.1–0.3 of the open eye; a frame on a blink's edge reads 0.4–0.6.
    blink_closed: float = 0.62  # below this fraction of the open level: eyes shut
    blink_open: float = 0.78  # back above this fraction: eyes open again
    blink_min_open: float = 0.6  # the open level itself, relative to the baseline
    blink_reference: float = 0.6  # seconds of open eyes the closure is judged against
    blink_max_closed: float = 3.0  # seconds; longer is not a blink
    blink_max_yaw: float = 45.0  # EAR also drops when the head turns far: ignore dips then
    turn_peak: float = 18.0  # degrees from baseline yaw
    turn_hold: float = 8.0
    turn_min_duration: float = 0.15  # a blink jerks the pose for one frame
    mouth_peak: float = 0.40  # inner-lip MAR above baseline (talking: 0.2–0.35, an "O": 0.6+)
    mouth_hold: float = 0.25
    mouth_min_duration: float = 0.3  # seconds: talking opens the mouth for less
    smile_peak: float = 1.15  # mouth width / baseline width
    smile_hold: float = 1.08
    smile_max_mar: float = 0.35  # a wide-open mouth is not a smile
    smile_min_duration: float = 0.25
    nod_peak: float = 10.0  # degrees of pitch down from baseline
    nod_hold: float = 5.0
    nod_min_duration: float = 0.15
    nod_max_duration: float = 2.5


# The levels at which a movement counts *against* the customer (a wrong action, a movement
# before the instruction): a turn held clearly past the credit level, a mouth opened wide for
# longer than speech opens it.
STRICT = DetectorConfig(
    turn_peak=22.0,
    turn_hold=10.0,
    turn_min_duration=0.3,
    mouth_peak=0.5,
    mouth_hold=0.3,
    mouth_min_duration=0.4,
    smile_peak=1.2,
    smile_min_duration=0.4,
    nod_peak=15.0,
    nod_min_duration=0.3,
)


@dataclass(frozen=True, slots=True)
class Detection:
    """An action found in a window: when it started, when it counted, how far it went."""

    action: Action
    start: float
    end: float  # time of the sample at which the action was complete
    peak: float


_Detector = Callable[[Sequence[Relative], DetectorConfig], "Detection | None"]


def _excursions(values: Sequence[float], hold: float, peak: float) -> list[tuple[int, int]]:
    """Index ranges [i, j] of runs with value > hold reaching > peak, that began inside."""
    runs: list[tuple[int, int]] = []
    start: int | None = None
    for i, v in enumerate([*values, float("-inf")]):
        if v > hold and start is None:
            start = i
        elif v <= hold and start is not None:
            if start > 0 and max(values[start:i]) > peak:
                runs.append((start, i - 1))
            start = None
    return runs


def _open_level(window: Sequence[Relative], i: int, seconds: float) -> float | None:
    """Median eye openness over the ``seconds`` before sample ``i`` (None: no sample there)."""
    t = window[i].t
    before = sorted(s.ear for s in window[:i] if t - seconds <= s.t < t)
    return before[len(before) // 2] if before else None


def _blink(window: Sequence[Relative], cfg: DetectorConfig) -> Detection | None:
    """Eyes open, then shut (below ``blink_closed`` of their open level), then open again."""
    i = 1
    while i < len(window):
        level = _open_level(window, i, cfg.blink_reference)
        sample = window[i]
        if (
            level is None
            or level < cfg.blink_min_open
            or sample.ear >= cfg.blink_closed * level
            or window[i - 1].ear < cfg.blink_closed * level  # already shut: not its onset
        ):
            i += 1
            continue
        j = i
        while j < len(window) and window[j].ear < cfg.blink_open * level:
            j += 1
        if j == len(window):
            return None  # not reopened yet
        closed = window[i:j]
        steady = all(abs(s.yaw) <= cfg.blink_max_yaw for s in closed)
        if steady and window[j].t - sample.t <= cfg.blink_max_closed:
            depth = min(s.ear for s in closed) / level
            return Detection(Action.BLINK, sample.t, window[j].t, depth)
        i = j + 1
    return None


def _held(
    action: Action,
    window: Sequence[Relative],
    values: Sequence[float],
    hold: float,
    peak: float,
    min_duration: float,
) -> Detection | None:
    """The first excursion beyond ``peak`` held beyond ``hold`` for ``min_duration``."""
    times = [s.t for s in window]
    for i, j in _excursions(values, hold, peak):
        for k in range(i, j + 1):
            if times[k] - times[i] >= min_duration and max(values[i : k + 1]) > peak:
                return Detection(action, times[i], times[k], max(values[i : j + 1]))
    return None


def _turn(sign: float, action: Action) -> _Detector:
    def detect(window: Sequence[Relative], cfg: DetectorConfig) -> Detection | None:
        values = [sign * s.yaw for s in window]
        return _held(action, window, values, cfg.turn_hold, cfg.turn_peak, cfg.turn_min_duration)

    return detect


def _open_mouth(window: Sequence[Relative], cfg: DetectorConfig) -> Detection | None:
    values = [s.mar for s in window]
    return _held(
        Action.OPEN_MOUTH, window, values, cfg.mouth_hold, cfg.mouth_peak, cfg.mouth_min_duration
    )


def _smile(window: Sequence[Relative], cfg: DetectorConfig) -> Detection | None:
    values = [s.smile if s.mar <= cfg.smile_max_mar else 0.0 for s in window]
    return _held(
        Action.SMILE, window, values, cfg.smile_hold, cfg.smile_peak, cfg.smile_min_duration
    )


def _nod(window: Sequence[Relative], cfg: DetectorConfig) -> Detection | None:
    times = [s.t for s in window]
    values = [s.pitch for s in window]
    for i, j in _excursions(values, cfg.nod_hold, cfg.nod_peak):
        returned = j + 1 < len(window) and times[j + 1] - times[i] <= cfg.nod_max_duration
        if returned and times[j] - times[i] >= cfg.nod_min_duration:
            return Detection(Action.NOD, times[i], times[j + 1], max(values[i : j + 1]))
    return None


_DETECTORS: dict[Action, _Detector] = {
    Action.BLINK: _blink,
    Action.TURN_LEFT: _turn(1.0, Action.TURN_LEFT),
    Action.TURN_RIGHT: _turn(-1.0, Action.TURN_RIGHT),
    Action.OPEN_MOUTH: _open_mouth,
    Action.SMILE: _smile,
    Action.NOD: _nod,
}


def detect(
    action: Action, window: Sequence[Relative], cfg: DetectorConfig | None = None
) -> Detection | None:
    """The first completed ``action`` that began inside ``window`` (time-ordered samples)."""
    return _DETECTORS[action](window, cfg or DetectorConfig())


def detect_all(window: Sequence[Relative], cfg: DetectorConfig | None = None) -> list[Detection]:
    """The first occurrence of every action found in ``window``, by completion time."""
    found = [detect(a, window, cfg) for a in Action]
    return sorted((d for d in found if d is not None), key=lambda d: d.end)


def occurrences(
    action: Action, window: Sequence[Relative], cfg: DetectorConfig | None = None
) -> list[Detection]:
    """Every separate ``action`` in ``window`` (for evaluation and tests)."""
    found: list[Detection] = []
    rest = list(window)
    while (hit := detect(action, rest, cfg)) is not None:
        found.append(hit)
        rest = [s for s in rest if s.t >= hit.end]
        if len(rest) == len(window):
            break
    return found
