"""One liveness attempt as a state machine fed with time-stamped frame observations.

::

    CREATED -start-> BASELINE -ready-> CHALLENGE(0) -met-> CHALLENGE(1) ... -last met-> ANALYSING
    BASELINE  -too slow-> TIMED_OUT
    CHALLENGE -time limit-> TIMED_OUT | -face gone too long-> FAILED | -conflicting turn-> FAILED
              | -deliberate movement before the instruction-> FAILED
    ANALYSING -conclude-> PASSED | FAILED | REFERRED
    BASELINE, CHALLENGE, ANALYSING -the server fell behind / no decision in time-> UNDECIDED
    any non-final state -abort-> ABORTED

Each challenge has two phases inside ``CHALLENGE``: first a "hold still" pause of the plan's
random length (:attr:`Challenge.pause`; :attr:`Attempt.holding` is True, :attr:`Attempt.current`
is None: the instruction is not shown yet, and nothing about it leaves the attempt), then the
instruction (``current`` names it). A deliberate movement (a head turn, a wide-open mouth, or
the coming action itself, but never a blink) that begins in the pause fails the attempt with
``liveness.moved_before_prompt``: a customer waits for the instruction, a replayed recording does
not know when it comes. An action whose onset is less than :attr:`AttemptConfig.min_reaction`
after the instruction is not credited (nobody reads and reacts that fast); it must be done again.
One whose onset is more than :attr:`AttemptConfig.max_reaction` after it ends the challenge as
timed out: a recording that happens to perform the action some seconds later is not an answer.

What counts as "another action" is deliberately narrow: only a clear head turn (stricter levels:
:attr:`AttemptConfig.conflict_detectors`) fails a challenge as ``liveness.wrong_action``. Eyes
that close inside a smile, a smile after a blink, the mouth opening while talking or the head's
bob are what real people do while following an instruction (measured: bench/eval_liveness.py).
A head *held* turned counts too, wherever the turn began: a clear turn (the stricter levels,
held for their duration) that was not asked for and is not the continuation of an asked turn
of the same direction fails the attempt, in a pause (``moved_before_prompt``) as in a challenge
(``wrong_action``): a recording that begins a turn while a smile is asked and holds it through
the pause meets no more challenges (bench/eval_liveness.py, replays).

A challenge is credited only on a *checkable* frame (:attr:`FrameObservation.checkable`: one
face, big and sharp enough to be compared with the reference). If the frame that completes the
movement is not checkable, a checkable frame within :attr:`AttemptConfig.credit_window` seconds
credits it; otherwise the movement must be done again. The attempt's
:class:`~verification.binding.FramePicker` chooses which frames are tied to the identity
(:attr:`AttemptResult.bound`).

The caller owns the clock: every method takes ``t`` (seconds, monotonic), so tests drive time
exactly. A server that falls behind pauses this clock (it passes the frames' time minus its own
stalls) or ends the attempt with :meth:`Attempt.undecide`: the customer is never failed for the
server's lag. Frames must arrive in time order; a frame older than the last one is dropped.
``ANALYSING`` is left by :meth:`Attempt.conclude` with the outcome of
:func:`verification.decision.decide`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from random import Random

from verification.binding import BoundFrame, FramePicker
from verification.challenges import (
    STRICT,
    Action,
    ChallengePlan,
    Detection,
    DetectorConfig,
    conflicts,
    detect,
    detect_all,
    forbidden_before,
)
from verification.errors import VerificationError
from verification.measures import Baseline, FrameMeasures, Relative, measure, relative
from verification.types import Box, Points, Vector

logger = logging.getLogger(__name__)


class AttemptState(StrEnum):
    """Where an attempt is."""

    CREATED = "created"
    BASELINE = "baseline"
    CHALLENGE = "challenge"
    ANALYSING = "analysing"
    PASSED = "passed"
    FAILED = "failed"
    REFERRED = "referred"
    TIMED_OUT = "timed_out"
    UNDECIDED = "undecided"  # the server could not decide in time: counts for nothing
    ABORTED = "aborted"


S = AttemptState
TRANSITIONS: dict[AttemptState, frozenset[AttemptState]] = {
    S.CREATED: frozenset({S.BASELINE, S.ABORTED}),
    S.BASELINE: frozenset({S.CHALLENGE, S.TIMED_OUT, S.UNDECIDED, S.ABORTED}),
    S.CHALLENGE: frozenset(
        {S.CHALLENGE, S.ANALYSING, S.TIMED_OUT, S.FAILED, S.UNDECIDED, S.ABORTED}
    ),
    S.ANALYSING: frozenset({S.PASSED, S.FAILED, S.REFERRED, S.UNDECIDED, S.ABORTED}),
    S.PASSED: frozenset(),
    S.FAILED: frozenset(),
    S.REFERRED: frozenset(),
    S.TIMED_OUT: frozenset(),
    S.UNDECIDED: frozenset(),
    S.ABORTED: frozenset(),
}
FINAL = frozenset(s for s, targets in TRANSITIONS.items() if not targets)
CONCLUSIONS = frozenset({S.PASSED, S.FAILED, S.REFERRED})


class InvalidAttemptState(VerificationError):
    """A move the attempt's current state does not allow."""

    def __init__(self, current: AttemptState, target: AttemptState) -> None:
        super().__init__(f'Cannot move to "{target}" in attempt state "{current}"')
        self.current = current
        self.target = target


def advance(current: AttemptState, target: AttemptState) -> AttemptState:
    """``target`` if the transition table allows it; :class:`InvalidAttemptState` otherwise."""
    if target not in TRANSITIONS[current]:
        raise InvalidAttemptState(current, target)
    return target


class EventKind(StrEnum):
    """Progress pushed to the customer's and the advisor's pages (and kept as evidence)."""

    BASELINE_STARTED = "baseline_started"
    HOLD = "hold"  # "hold still": the pause before challenge ``index`` (action not revealed)
    CHALLENGE_SHOWN = "challenge_shown"
    CHALLENGE_MET = "challenge_met"
    CHALLENGE_TIMED_OUT = "challenge_timed_out"
    WRONG_ACTION = "wrong_action"
    MOVED_BEFORE_PROMPT = "moved_before_prompt"
    BASELINE_TIMED_OUT = "baseline_timed_out"
    FACE_LOST = "face_lost"
    DECISION_TIMED_OUT = "decision_timed_out"
    UNDECIDED = "undecided"
    ANALYSING = "analysing"
    CONCLUDED = "concluded"
    ABORTED = "aborted"


_CHALLENGE_EVENTS = frozenset(
    {
        EventKind.CHALLENGE_SHOWN,
        EventKind.CHALLENGE_MET,
        EventKind.CHALLENGE_TIMED_OUT,
        EventKind.WRONG_ACTION,
        EventKind.FACE_LOST,
    }
)
# About a challenge whose instruction is not on screen yet: the index only, never the action.
_HOLD_EVENTS = frozenset({EventKind.HOLD, EventKind.MOVED_BEFORE_PROMPT})


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """Something the UI shows and the evidence timeline records."""

    t: float
    kind: EventKind
    state: AttemptState
    index: int | None = None  # challenge index, when about a challenge
    action: Action | None = None
    total: int = 0  # number of challenges in the plan (for "2 of 3")
    detail: str = ""  # a reason code, or the action that was detected


@dataclass(frozen=True, slots=True)
class FrameObservation:
    """What the engine saw in one analysed frame (``landmarks68=None``: no measurable face).

    ``frame_id`` is the caller's number for the frame (the bound frames name it); -1 lets the
    attempt number frames itself. ``checkable``: the face can be compared with the reference
    (one face, big and sharp enough); only checkable frames credit a challenge or are bound."""

    width: int
    height: int
    landmarks68: Points | None = field(default=None, repr=False)
    box: Box | None = None
    embedding: Vector | None = field(default=None, repr=False)
    frame_hash: str | None = None
    pad_score: float | None = None
    quality: float | None = None  # engine's size × sharpness score, to pick the best frames
    frame_id: int = -1
    checkable: bool = True

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"frame size must be positive, got {self.width}×{self.height}")
        if self.landmarks68 is not None and self.landmarks68.shape != (68, 2):
            raise ValueError(f"landmarks68 must be (68, 2), got {self.landmarks68.shape}")


NEUTRAL_FACE_GUIDANCE = "verify.guide.neutral_face"


@dataclass(frozen=True, slots=True)
class NeutralLimits:
    """What a neutral face is, in absolute measures (MediaPipe landmarks mapped to 68 points).

    The baseline is the median of a window of frames spanning at least ``min_span`` seconds; a
    window outside these limits (a grin, an open mouth, the head tilted far, the eyes shut, the
    head still moving) is not taken: challenges are detected relative to the baseline, so a
    smiling baseline could never show a smile. People often sit at an angle to their screen's
    camera: a yaw up to ``max_yaw`` (≈ 30°) is a neutral face for them (RD_Radio2 sits at
    +20…+30° for most of her clip)."""

    max_yaw: float = 32.0
    max_pitch: float = 25.0
    max_mar: float = 0.30
    max_smile: float = 0.95
    min_ear: float = 0.12
    max_yaw_spread: float = 8.0  # degrees between the window's extremes: the head is settled
    min_span: float = 0.3  # seconds the window must cover

    def accepts(self, base: Baseline) -> bool:
        """True when ``base`` is a neutral face."""
        return (
            abs(base.yaw) <= self.max_yaw
            and abs(base.pitch) <= self.max_pitch
            and base.mar <= self.max_mar
            and base.smile <= self.max_smile
            and base.ear >= self.min_ear
        )

    def settled(self, window: Sequence[tuple[float, FrameMeasures]]) -> bool:
        """True when ``window`` (time, measures) spans ``min_span`` with a steady head."""
        yaws = [m.yaw for _, m in window]
        span = window[-1][0] - window[0][0] if window else 0.0
        return span >= self.min_span and max(yaws) - min(yaws) <= self.max_yaw_spread


@dataclass(frozen=True, slots=True)
class AttemptConfig:
    """Timing rules of an attempt (seconds)."""

    baseline_frames: int = 5
    baseline_timeout: float = 6.0
    max_face_gap: float = 1.0
    analysing_timeout: float = 5.0
    strict_order: bool = True  # a clear head turn before the asked action fails the challenge
    hold_still: bool = True  # a deliberate movement in the pause before an instruction fails
    min_reaction: float = 0.45  # seconds: an onset sooner after the instruction is not credited
    # Seconds after the instruction by which the movement must have begun: a replayed recording
    # performs its actions on its own schedule, a customer answers the instruction. A later onset
    # ends the challenge as timed out at once; with no movement at all it times out
    # ``action_seconds`` after this deadline (or at the challenge's own time limit if sooner).
    max_reaction: float = 3.0
    action_seconds: float = 2.5
    # Seconds after a challenge is met in which the same action restarting is the tail of that
    # movement, not a new one (the yaw dips below the hold level inside one real turn).
    settle: float = 1.5
    # Seconds after a challenge is met in which *any* movement is the aftermath of that one (a
    # wide-open mouth closing throws the yaw past a turn for a frame or two: d12).
    aftermath: float = 0.5
    # Seconds after a movement completes within which a checkable frame may still credit it.
    credit_window: float = 0.5
    # Frames a second the server must have analysed while a challenge was on screen for its
    # time-out to be the customer's: a blink lasts 0.1–0.3 s and falls between frames any
    # slower (measured, bench/verify_server.py --rates: 24.7–28.3/s in blink windows on a free
    # machine, 13–16/s beside two busy processes, where a short blink was missed); a pose holds
    # longer. A challenge that times out after fewer, with the server never
    # idle meanwhile (no tick: a newer frame was always waiting), ends the attempt undecided —
    # not counted — instead of failed. Idle ticks mean the video, not the server, was slow.
    min_blink_fps: float = 20.0
    min_pose_fps: float = 4.0
    detectors: DetectorConfig = field(default_factory=DetectorConfig)
    # Levels at which a movement counts *against* the customer (wrong action, moved before the
    # prompt): clearer than the levels that credit a challenge, so that natural movement is not
    # read as a deliberate one.
    conflict_detectors: DetectorConfig = STRICT
    neutral: NeutralLimits = field(default_factory=NeutralLimits)

    def __post_init__(self) -> None:
        if self.baseline_frames < 1:
            raise ValueError("baseline_frames must be at least 1")
        if min(self.baseline_timeout, self.max_face_gap, self.analysing_timeout) <= 0:
            raise ValueError("timeouts must be positive")
        if not 0 <= self.aftermath <= self.settle <= 5:
            raise ValueError(
                f"need 0 ≤ aftermath ≤ settle ≤ 5 s, got {self.aftermath}, {self.settle}"
            )
        if not 0 <= self.min_reaction < 2:
            raise ValueError(f"min_reaction must be within 0–2 s, got {self.min_reaction}")
        if not self.min_reaction < self.max_reaction <= 10:
            raise ValueError(
                f"need min_reaction < max_reaction ≤ 10 s, got {self.min_reaction}, "
                f"{self.max_reaction}"
            )
        if not 0 < self.action_seconds <= 10:
            raise ValueError(f"action_seconds must be within 0–10 s, got {self.action_seconds}")
        if not 0 <= self.credit_window <= 2:
            raise ValueError(f"credit_window must be within 0–2 s, got {self.credit_window}")
        if not (0 <= self.min_pose_fps <= 30 and 0 <= self.min_blink_fps <= 60):
            raise ValueError("min_pose_fps must be within 0–30, min_blink_fps within 0–60")


@dataclass(frozen=True, slots=True)
class ChallengeOutcome:
    """One challenge of the plan: its pause, when it was shown and when (and how) it was met."""

    index: int
    action: Action
    shown_at: float | None
    met_at: float | None
    detection: Detection | None
    pause: float = 0.0  # the plan's "hold still" seconds before the instruction
    held_from: float | None = None  # when that pause began


@dataclass(frozen=True, slots=True)
class Sample:
    """One analysed frame kept for the passive checks and evidence."""

    t: float
    observation: FrameObservation = field(repr=False)
    measures: FrameMeasures | None
    relative: Relative | None


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """Everything the decision and the evidence need, frozen at the time it was read."""

    nonce: str
    state: AttemptState
    reason: str | None  # e.g. "liveness.challenge_timeout" when the attempt did not get through
    started_at: float | None
    ended_at: float | None
    baseline: Baseline | None
    challenges: tuple[ChallengeOutcome, ...]
    events: tuple[ProgressEvent, ...]
    samples: tuple[Sample, ...] = field(repr=False)
    bound: tuple[BoundFrame, ...] = ()  # frames tied to the identity (final ones)

    @property
    def liveness_passed(self) -> bool:
        """Every challenge met in order (the active part is done)."""
        return all(c.met_at is not None for c in self.challenges)


POSE_FILTER_SECONDS = 0.35  # the head pose is the median of the samples this recent


def _steadied(rel: Relative, window: Sequence[Relative]) -> Relative:
    """``rel`` with yaw and pitch replaced by the median of the last three samples within
    :data:`POSE_FILTER_SECONDS`: the pose solve jumps by ±25° for single frames of a laughing
    or talking face (d12), which no head does; a real turn lasts many frames."""
    recent = [r for r in window[-2:] if rel.t - r.t <= POSE_FILTER_SECONDS]
    if len(recent) < 2:
        return rel
    yaws = sorted([rel.yaw, *(r.yaw for r in recent)])
    pitches = sorted([rel.pitch, *(r.pitch for r in recent)])
    return dataclasses.replace(rel, yaw=yaws[1], pitch=pitches[1])


class Attempt:
    """Drives one attempt: feed ``observe(t, frame)`` in time order, ``tick(t)`` on a timer.

    ``rng`` draws the random bound frames (default: the operating system's CSPRNG)."""

    def __init__(
        self, plan: ChallengePlan, config: AttemptConfig | None = None, rng: Random | None = None
    ) -> None:
        self.plan = plan
        self.config = config or AttemptConfig()
        self._picker = FramePicker(rng)
        self._state = S.CREATED
        self._index = 0
        self._reason: str | None = None
        self._started: float | None = None
        self._ended: float | None = None
        self._since: float = 0.0  # when the current state was entered
        self._last_t: float | None = None
        self._last_face: float | None = None
        self._frames = 0
        self._baseline: Baseline | None = None
        self._pending: list[tuple[float, FrameMeasures]] = []
        self._not_neutral = False  # the last baseline window was not a neutral face
        self._window: list[Relative] = []
        self._ignore_before: float | None = None  # a movement discarded: look after it
        self._raw: list[Relative] = []  # the last unfiltered samples (pose filter)
        # The head turned one way past the strict hold level: (direction, since, peaked at).
        self._away: tuple[Action, float, float | None] | None = None
        self._holding = False
        self._held: dict[int, float] = {}
        self._shown: dict[int, float] = {}
        self._window_frames = 0  # frames analysed since the challenge on screen was shown
        self._window_ticks = 0  # and idle ticks (no new frame was there)
        self._met: dict[int, Detection] = {}
        self._events: list[ProgressEvent] = []
        self._samples: list[Sample] = []

    @property
    def state(self) -> AttemptState:
        """The current state."""
        return self._state

    @property
    def baseline_guidance(self) -> str | None:
        """The instruction to show while the baseline waits for a neutral face, else None."""
        if self._state is S.BASELINE and self._not_neutral:
            return NEUTRAL_FACE_GUIDANCE
        return None

    @property
    def current(self) -> tuple[int, Action] | None:
        """``(index, action)`` of the challenge on screen, if any (None during its pause)."""
        if self._state is not S.CHALLENGE or self._holding:
            return None
        return self._index, self.plan.challenges[self._index].action

    @property
    def holding(self) -> bool:
        """True in the "hold still" pause before an instruction (show "hold still", no action)."""
        return self._state is S.CHALLENGE and self._holding

    @property
    def camera_rate(self) -> bool:
        """True while a blink is coming or asked: analyse every camera frame then (a blink
        lasts 100–150 ms, and at 10 frames a second one is often sampled only on its edge)."""
        return (
            self._state is S.CHALLENGE and self.plan.challenges[self._index].action is Action.BLINK
        )

    @property
    def keep(self) -> frozenset[int]:
        """Frame ids whose images the caller must keep (they are, or may become, bound)."""
        return self._picker.keep

    @property
    def bound(self) -> tuple[BoundFrame, ...]:
        """Frames tied to the identity so far (final: embed them)."""
        return self._picker.final

    @property
    def events(self) -> tuple[ProgressEvent, ...]:
        """Every event so far, in order."""
        return tuple(self._events)

    def start(self, t: float) -> list[ProgressEvent]:
        """Begin collecting the neutral baseline."""
        mark = len(self._events)
        self._move(S.BASELINE, t)
        self._started = t
        self._picker.open("baseline")
        self._emit(t, EventKind.BASELINE_STARTED)
        return self._events[mark:]

    def observe(self, t: float, frame: FrameObservation) -> list[ProgressEvent]:
        """Feed one analysed frame; returns the events it caused."""
        mark = len(self._events)
        if self._last_t is not None and t <= self._last_t:
            logger.debug("dropping out-of-order frame at %s (last %s)", t, self._last_t)
            return []
        self._last_t = t
        if frame.frame_id < 0:
            frame = dataclasses.replace(frame, frame_id=self._frames)
        self._frames += 1
        if self._showing:
            self._window_frames += 1
        self._check_timeouts(t)
        if self._state not in (S.BASELINE, S.CHALLENGE):
            return self._events[mark:]
        measures = None
        if frame.landmarks68 is not None:
            measures = measure(frame.landmarks68, frame.width, frame.height)
            self._last_face = t
        rel = relative(t, measures, self._baseline) if measures and self._baseline else None
        self._samples.append(Sample(t, frame, measures, rel))
        checkable = frame.checkable and measures is not None
        self._picker.offer(frame.frame_id, t, checkable, frame.quality or 0.0)
        if measures is not None and self._state is S.BASELINE:
            self._collect_baseline(t, measures)
        elif rel is not None and self._state is S.CHALLENGE:
            steady = _steadied(rel, self._raw)
            self._window.append(steady)
            self._raw = [*self._raw[-1:], rel]
            self._track_away(steady)
            self._judge(t, frame.frame_id, checkable)
        return self._events[mark:]

    def tick(self, t: float) -> list[ProgressEvent]:
        """Apply timeouts at time ``t`` (call it when frames stop coming, e.g. every 0.5 s)."""
        mark = len(self._events)
        if self._last_t is None or t > self._last_t:
            if self._showing:
                self._window_ticks += 1
            self._check_timeouts(t)
        return self._events[mark:]

    @property
    def _showing(self) -> bool:
        return self._state is S.CHALLENGE and not self._holding

    def abort(self, t: float, reason: str = "attempt.aborted") -> list[ProgressEvent]:
        """Stop the attempt (advisor cancelled, call ended, page closed)."""
        mark = len(self._events)
        self._finish(S.ABORTED, t, reason, EventKind.ABORTED)
        return self._events[mark:]

    def undecide(self, t: float, reason: str = "attempt.server_busy") -> list[ProgressEvent]:
        """End without a decision because of the server (it fell behind): counts for nothing."""
        mark = len(self._events)
        self._finish(S.UNDECIDED, t, reason, EventKind.UNDECIDED)
        return self._events[mark:]

    def conclude(self, t: float, outcome: AttemptState, reason: str = "") -> list[ProgressEvent]:
        """Record the decision: ``outcome`` is PASSED, FAILED or REFERRED."""
        if outcome not in CONCLUSIONS:
            raise ValueError(f"an attempt concludes as passed, failed or referred, not {outcome}")
        mark = len(self._events)
        self._finish(outcome, t, reason or None, EventKind.CONCLUDED)
        return self._events[mark:]

    def result(self) -> AttemptResult:
        """A frozen snapshot (read it in ANALYSING to decide, or at the end for evidence)."""
        outcomes = tuple(
            ChallengeOutcome(
                index=i,
                action=c.action,
                shown_at=self._shown.get(i),
                met_at=self._met[i].end if i in self._met else None,
                detection=self._met.get(i),
                pause=c.pause,
                held_from=self._held.get(i),
            )
            for i, c in enumerate(self.plan.challenges)
        )
        return AttemptResult(
            nonce=self.plan.nonce,
            state=self._state,
            reason=self._reason,
            started_at=self._started,
            ended_at=self._ended,
            baseline=self._baseline,
            challenges=outcomes,
            events=tuple(self._events),
            samples=tuple(self._samples),
            bound=self._picker.final,
        )

    # -- internals -------------------------------------------------------------------------

    def _move(self, target: AttemptState, t: float) -> None:
        self._state = advance(self._state, target)
        self._since = t

    def _emit(self, t: float, kind: EventKind, detail: str = "") -> None:
        index: int | None = None
        action: Action | None = None
        if kind in _HOLD_EVENTS or (kind is EventKind.FACE_LOST and self._holding):
            index = self._index
        elif kind in _CHALLENGE_EVENTS:
            index, action = self._index, self.plan.challenges[self._index].action
        total = len(self.plan.challenges)
        event = ProgressEvent(t, kind, self._state, index, action, total, detail)
        self._events.append(event)
        logger.debug("attempt %s: %s", self.plan.nonce[:6], event)

    def _finish(self, target: AttemptState, t: float, reason: str | None, kind: EventKind) -> None:
        self._move(target, t)
        self._picker.close()
        self._reason = reason
        self._ended = t
        self._emit(t, kind, reason or "")

    def _collect_baseline(self, t: float, measures: FrameMeasures) -> None:
        """Take the latest faces (``baseline_frames`` of them at least, covering
        ``neutral.min_span`` seconds) as the baseline once they are a settled, neutral face."""
        pending = self._pending
        pending.append((t, measures))
        span = self.config.neutral.min_span
        while len(pending) > self.config.baseline_frames and t - pending[1][0] >= span:
            pending.pop(0)
        if len(pending) < self.config.baseline_frames or not self.config.neutral.settled(pending):
            return
        candidate = Baseline.from_frames([m for _, m in pending])
        if not self.config.neutral.accepts(candidate):
            self._not_neutral = True
            return
        self._not_neutral = False
        self._baseline = candidate
        self._hold(0, t)

    def _hold(self, index: int, t: float) -> None:
        """Start the pause before challenge ``index`` (shown at once when its pause is 0)."""
        self._move(S.CHALLENGE, t)
        self._index = index
        self._held[index] = t
        self._holding = True
        self._window = []
        self._ignore_before = None
        self._picker.open(f"pause-{index + 1}", index)
        pause = self.plan.challenges[index].pause
        self._emit(t, EventKind.HOLD, f"{pause:.2f}")
        if pause <= 0:
            self._show(t)

    def _show(self, t: float) -> None:
        self._holding = False
        self._shown[self._index] = t
        self._window_frames = self._window_ticks = 0
        self._picker.open(f"challenge-{self._index + 1}", self._index)
        self._emit(t, EventKind.CHALLENGE_SHOWN)

    def _moved_early(self, action: Action, shown: float | None) -> Detection | None:
        """A deliberate movement (strict levels) begun in the pause before ``action``."""
        for found in detect_all(self._window, self.config.conflict_detectors):
            early = shown is None or found.start < shown
            if early and found.action in forbidden_before(action):
                if not self._tail_of_previous(found):
                    return found
        return None

    def _track_away(self, sample: Relative) -> None:
        """Follow the run of samples with the head turned one way past the strict hold level."""
        strict = self.config.conflict_detectors
        way = (
            Action.TURN_LEFT
            if sample.yaw > strict.turn_hold
            else Action.TURN_RIGHT
            if sample.yaw < -strict.turn_hold
            else None
        )
        if way is None:
            self._away = None
            return
        if self._away is None or self._away[0] is not way:
            self._away = (way, sample.t, None)
        if self._away[2] is None and abs(sample.yaw) > strict.turn_peak:
            self._away = (way, self._away[1], sample.t)

    def _turned_unasked(self, t: float, action: Action, shown: float | None) -> Action | None:
        """The direction of a clear turn held now that nobody asked for: not the challenge on
        screen, not the continuation of an asked turn of that direction (begun before it was
        met, or restarted within ``settle`` of it)."""
        if self._away is None:
            return None
        way, since, peaked = self._away
        strict = self.config.conflict_detectors
        if peaked is None or t - since < strict.turn_min_duration:
            return None
        if shown is not None and action is way:
            return None  # the asked turn: credited (or not) by the usual rules
        for met in self._met.values():
            if met.action is way and since <= met.end + self.config.settle:
                return None
        return way

    def _judge(self, t: float, frame_id: int, checkable: bool) -> None:
        action = self.plan.challenges[self._index].action
        shown = None if self._holding else self._shown[self._index]
        if self.config.strict_order and (way := self._turned_unasked(t, action, shown)):
            logger.info("attempt %s: %s held, not asked", self.plan.nonce[:6], way)
            if shown is None and self.config.hold_still:
                self._finish(
                    S.FAILED, t, "liveness.moved_before_prompt", EventKind.MOVED_BEFORE_PROMPT
                )
                return
            if shown is not None:
                self._finish(S.FAILED, t, "liveness.wrong_action", EventKind.WRONG_ACTION)
                return
        if self.config.hold_still and (early := self._moved_early(action, shown)) is not None:
            logger.info(
                "attempt %s: %s before the instruction (%s) appeared",
                self.plan.nonce[:6],
                early.action,
                action,
            )
            self._finish(S.FAILED, t, "liveness.moved_before_prompt", EventKind.MOVED_BEFORE_PROMPT)
            return
        if shown is None:
            return
        hit = self._hit(action, shown)
        if self.config.strict_order:
            since = [r for r in self._window if r.t >= shown]
            strict = self.config.conflict_detectors
            bad = [d for d in detect_all(since, strict) if d.action in conflicts(action)]
            if bad and (hit is None or bad[0].end < hit.end):
                logger.info("attempt %s: %s before %s", self.plan.nonce[:6], bad[0].action, action)
                self._finish(S.FAILED, t, "liveness.wrong_action", EventKind.WRONG_ACTION)
                return
        if hit is None:
            return
        if hit.start > shown + self.config.max_reaction:
            logger.info("attempt %s: %s began too late", self.plan.nonce[:6], action)
            self._time_out(t, seen=True)
            return
        if not checkable:
            # The movement is there but this frame cannot be checked: a checkable frame soon
            # after may credit it; past the credit window the movement must be done again.
            if t - hit.end > self.config.credit_window:
                self._ignore_before = t
            return
        self._credit(t, frame_id, hit)

    def _hit(self, action: Action, shown: float) -> Detection | None:
        """The asked action, begun after the reaction time (and after a discarded one)."""
        start = shown if self._ignore_before is None else max(shown, self._ignore_before)
        since = [r for r in self._window if r.t >= start]
        # The last sample before ``min_reaction`` anchors the window: an excursion already
        # under way there began too soon after the instruction and is not credited.
        soon = sum(1 for r in since if r.t < shown + self.config.min_reaction)
        return detect(action, since[max(soon - 1, 0) :], self.config.detectors)

    def _credit(self, t: float, frame_id: int, hit: Detection) -> None:
        span = t - self._shown[self._index]
        logger.debug(
            "challenge %s met: %d frames analysed in %.1f s (%.1f/s)",
            hit.action.value,
            self._window_frames,
            span,
            self._window_frames / span if span > 0 else 0.0,
        )
        self._met[self._index] = hit
        self._picker.met(frame_id, t)
        self._emit(t, EventKind.CHALLENGE_MET, hit.action.value)
        if self._index + 1 < len(self.plan.challenges):
            self._hold(self._index + 1, t)
        else:
            self._holding = False
            self._picker.close()
            self._move(S.ANALYSING, t)
            self._emit(t, EventKind.ANALYSING)

    def _tail_of_previous(self, found: Detection) -> bool:
        """``found`` begins within ``aftermath`` of the previous challenge being met, or restarts
        that same action within ``settle``: the end of that movement, not a new one."""
        previous = self._met.get(self._index - 1)
        if previous is None:
            return False
        after = found.start - previous.end
        same = found.action is previous.action
        return after <= self.config.aftermath or (same and after <= self.config.settle)

    def _time_out(self, t: float, *, seen: bool = False) -> None:
        """The challenge timed out; ``seen``: its movement was seen, begun too late (however
        slow the server, that is the answer's timing, not a frame it missed)."""
        action = self.plan.challenges[self._index].action
        needed = self.config.min_blink_fps if action is Action.BLINK else self.config.min_pose_fps
        span = t - self._shown[self._index]
        managed = self._window_frames / span if span > 0 else 0.0
        logger.info(
            "challenge %s timed out: %d frames analysed in %.1f s (%.1f/s), %d idle ticks",
            action.value,
            self._window_frames,
            span,
            managed,
            self._window_ticks,
        )
        if not seen and managed < needed and self._window_ticks == 0:  # the server fell behind
            logger.warning(
                "challenge %s timed out at %.1f frames/s (needs %.0f): undecided",
                action.value,
                managed,
                needed,
            )
            self._finish(S.UNDECIDED, t, "attempt.server_busy", EventKind.UNDECIDED)
            return
        self._finish(S.TIMED_OUT, t, "liveness.challenge_timeout", EventKind.CHALLENGE_TIMED_OUT)

    def _check_timeouts(self, t: float) -> None:
        cfg = self.config
        if self._state is S.BASELINE and t - self._since > cfg.baseline_timeout:
            reason = "liveness.not_neutral" if self._not_neutral else "liveness.baseline_timeout"
            self._finish(S.TIMED_OUT, t, reason, EventKind.BASELINE_TIMED_OUT)
        elif self._state is S.CHALLENGE:
            last_face = max(self._last_face or self._since, self._since)
            challenge = self.plan.challenges[self._index]
            if t - last_face > cfg.max_face_gap:
                self._finish(S.FAILED, t, "liveness.face_lost", EventKind.FACE_LOST)
            elif self._holding:
                if t - self._held[self._index] >= challenge.pause:
                    self._show(t)
            elif t - self._shown[self._index] > min(
                challenge.time_limit, cfg.max_reaction + cfg.action_seconds
            ):
                self._time_out(t)
        elif self._state is S.ANALYSING and t - self._since > cfg.analysing_timeout:
            # No decision in time is the server's fault, never the customer's.
            self._finish(S.UNDECIDED, t, "attempt.server_busy", EventKind.DECISION_TIMED_OUT)
