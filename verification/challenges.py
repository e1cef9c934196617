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
_OPPOSITE = {Action.TURN_LEFT: Action.TURN_RIGHT, Action.TURN_RIGHT: Action.TURN_LEFT}

# Actions that, performed *instead of* the one asked for, fail the challenge: big deliberate
# movements a replayed recording is full of. Blinks and smiles happen naturally while following
# any instruction, and a big smile opens the mouth, so those never count against the customer.
_CONFLICTS: dict[Action, frozenset[Action]] = {
    Action.BLINK: frozenset({Action.TURN_LEFT, Action.TURN_RIGHT, Action.NOD, Action.OPEN_MOUTH}),
    Action.TURN_LEFT: frozenset({Action.TURN_RIGHT, Action.NOD, Action.OPEN_MOUTH}),
    Action.TURN_RIGHT: frozenset({Action.TURN_LEFT, Action.NOD, Action.OPEN_MOUTH}),
    Action.OPEN_MOUTH: frozenset({Action.TURN_LEFT, Action.TURN_RIGHT, Action.NOD}),
    Action.SMILE: frozenset({Action.TURN_LEFT, Action.TURN_RIGHT, Action.NOD}),
    Action.NOD: frozenset({Action.TURN_LEFT, Action.TURN_RIGHT, Action.OPEN_MOUTH}),
}


def conflicts(action: Action) -> frozenset[Action]:
    """Actions that fail a challenge for ``action`` when they come first."""
    return _CONFLICTS[action]


# Deliberate movements: a customer told to hold still and wait for the instruction makes none.
_DELIBERATE = frozenset({Action.TURN_LEFT, Action.TURN_RIGHT, Action.NOD, Action.OPEN_MOUTH})


def forbidden_before(action: Action) -> frozenset[Action]:
    """Actions that fail the attempt when they begin in the "hold still" pause before the
    instruction for ``action`` appears: every deliberate movement, and ``action`` itself (a
    recording performing it on its own schedule), except a blink, which nobody can hold back
    for two seconds."""
    return _DELIBERATE | ({action} - {Action.BLINK})


# Seconds of "hold still" before each instruction appears, drawn per challenge with the plan.
# A replayed recording does not know when the instruction comes: any deliberate movement in the
# pause fails the attempt (``liveness.moved_before_prompt``). Long pauses catch more replays but
# every second of them is a second the customer waits: see bench/eval_liveness.py.
PAUSE = (0.4, 1.0)


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


def draw_actions(
    n: int, vocabulary: Sequence[Action] = VOCABULARY, rng: Random | None = None
) -> tuple[Action, ...]:
    """``n`` actions from ``vocabulary``: no action twice in a row, and, when the vocabulary
    leaves another choice, no turn straight after a turn the other way (a left-right swing
    confuses people and would let one sweep of the head through centre answer both).

    Repeats further apart are allowed on purpose: with the small vocabularies of the dev clips,
    plans of distinct actions are the permutations of what a clip contains, which a replayed
    clip matches more often (bench/eval_liveness.py with distinct plans and 0.35–0.9 s pauses:
    4 of 40 replays passed)."""
    choices = tuple(dict.fromkeys(vocabulary))
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    if len(choices) < 2 and n > 1:
        raise ValueError("the vocabulary needs at least two actions to avoid repeats")
    pick = rng or secrets.SystemRandom()
    drawn: list[Action] = []
    for _ in range(n):
        allowed = [a for a in choices if not drawn or a != drawn[-1]]
        calm = [a for a in allowed if not drawn or _OPPOSITE.get(drawn[-1]) != a]
        drawn.append(pick.choice(calm or allowed))
    return tuple(drawn)


def draw_challenges(
    n: int = 3,
    vocabulary: Sequence[Action] = VOCABULARY,
    rng: Random | None = None,
    time_limit: float = 8.0,
    min_challenges: int = 3,
    pause: tuple[float, float] = PAUSE,
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
    actions = draw_actions(n, vocabulary, pick)
    return ChallengePlan(
        nonce=secrets.token_urlsafe(16),
        challenges=tuple(
            Challenge(a, time_limit, round(pick.uniform(low, high), 3)) for a in actions
        ),
    )


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Levels of each detector, relative to the customer's baseline (measured on real clips)."""

    # EAR / baseline at the bottom of the closure; at 10 fps a fast blink (eyes shut ~0.1 s,
    # 0.45–0.6 of neutral) is often sampled on its edge: 0.66 measured on Katie Hill's blink.
    blink_closed: float = 0.70
    blink_open: float = 0.80  # back above this = eyes open again
    blink_max_closed: float = 3.0  # seconds; longer is not a blink
    blink_max_yaw: float = 15.0  # EAR also drops when the head turns: ignore dips then
    turn_peak: float = 18.0  # degrees from baseline yaw
    # dlib's yaw jitters by ±6° inside a real turn (d12: −17, −11, −21…): with a hold of 12°
    # one turn split into two excursions and the second counted as a new (wrong) action.
    turn_hold: float = 8.0
    turn_min_samples: int = 2  # a blink jerks the pose for one frame
    mouth_peak: float = 0.30  # MAR above baseline
    mouth_hold: float = 0.20
    mouth_min_duration: float = 0.25  # seconds: talking opens the mouth for less
    smile_peak: float = 1.15  # mouth width / baseline width
    smile_hold: float = 1.08
    smile_max_mar: float = 0.35  # a wide-open mouth is not a smile
    smile_min_duration: float = 0.25
    nod_peak: float = 10.0  # degrees of pitch down from baseline
    nod_hold: float = 5.0
    nod_min_samples: int = 2  # a blink jerks the brows (and the pitch) for one frame
    nod_max_duration: float = 2.5


@dataclass(frozen=True, slots=True)
class Detection:
    """An action found in a window: when it started, when it counted, how far it went."""

    action: Action
    start: float
    end: float  # time of the sample at which the action was complete
    peak: float


_Detector = Callable[[Sequence[Relative], DetectorConfig], "Detection | None"]


def _excursions(
    times: Sequence[float], values: Sequence[float], hold: float, peak: float
) -> list[tuple[int, int]]:
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


def _blink(window: Sequence[Relative], cfg: DetectorConfig) -> Detection | None:
    times = [s.t for s in window]
    closure = [-s.ear for s in window]  # larger = more closed
    for i, j in _excursions(times, closure, -cfg.blink_open, -cfg.blink_closed):
        reopened = j + 1 < len(window)
        steady = all(abs(s.yaw) <= cfg.blink_max_yaw for s in window[i : j + 1])
        if reopened and steady and times[j + 1] - times[i] <= cfg.blink_max_closed:
            return Detection(Action.BLINK, times[i], times[j + 1], -max(closure[i : j + 1]))
    return None


def _held(
    action: Action,
    window: Sequence[Relative],
    values: Sequence[float],
    hold: float,
    peak: float,
    min_samples: int = 1,
    min_duration: float = 0.0,
) -> Detection | None:
    times = [s.t for s in window]
    for i, j in _excursions(times, values, hold, peak):
        for k in range(i, j + 1):
            long_enough = k - i + 1 >= min_samples and times[k] - times[i] >= min_duration
            if long_enough and max(values[i : k + 1]) > peak:
                return Detection(action, times[i], times[k], max(values[i : j + 1]))
    return None


def _turn(sign: float, action: Action) -> _Detector:
    def detect(window: Sequence[Relative], cfg: DetectorConfig) -> Detection | None:
        values = [sign * s.yaw for s in window]
        return _held(action, window, values, cfg.turn_hold, cfg.turn_peak, cfg.turn_min_samples)

    return detect


def _open_mouth(window: Sequence[Relative], cfg: DetectorConfig) -> Detection | None:
    values = [s.mar for s in window]
    return _held(
        Action.OPEN_MOUTH,
        window,
        values,
        cfg.mouth_hold,
        cfg.mouth_peak,
        2,
        cfg.mouth_min_duration,
    )


def _smile(window: Sequence[Relative], cfg: DetectorConfig) -> Detection | None:
    values = [s.smile if s.mar <= cfg.smile_max_mar else 0.0 for s in window]
    return _held(
        Action.SMILE, window, values, cfg.smile_hold, cfg.smile_peak, 2, cfg.smile_min_duration
    )


def _nod(window: Sequence[Relative], cfg: DetectorConfig) -> Detection | None:
    times = [s.t for s in window]
    values = [s.pitch for s in window]
    for i, j in _excursions(times, values, cfg.nod_hold, cfg.nod_peak):
        returned = j + 1 < len(window) and times[j + 1] - times[i] <= cfg.nod_max_duration
        if returned and j - i + 1 >= cfg.nod_min_samples:
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
