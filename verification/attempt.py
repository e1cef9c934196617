"""One liveness attempt as a state machine fed with time-stamped frame observations.

::

    CREATED -start-> BASELINE -ready-> CHALLENGE(0) -met-> CHALLENGE(1) ... -last met-> ANALYSING
    BASELINE  -too slow-> TIMED_OUT
    CHALLENGE -time limit-> TIMED_OUT | -face gone too long-> FAILED | -conflicting action-> FAILED
              | -deliberate movement before the instruction-> FAILED
    ANALYSING -conclude-> PASSED | FAILED | REFERRED   (-no decision in time-> TIMED_OUT)
    any non-final state -abort-> ABORTED

Each challenge has two phases inside ``CHALLENGE``: first a "hold still" pause of the plan's
random length (:attr:`Challenge.pause`; :attr:`Attempt.holding` is True, :attr:`Attempt.current`
is None: the instruction is not shown yet), then the instruction (``current`` names it). Any
deliberate movement (turn, nod, open mouth, or the coming action itself, but not a blink) that
begins in the pause fails the attempt with ``liveness.moved_before_prompt``: a customer waits
for the instruction, a replayed recording does not know when it comes. An action whose onset is
less than :attr:`AttemptConfig.min_reaction` after the instruction is not credited (nobody reads
and reacts that fast); it must be done again.

The caller owns the clock: every method takes ``t`` (seconds, monotonic, e.g. frame time or
``loop.time()``), so tests drive time exactly. Frames must arrive in time order; a frame older
than the last one is dropped. ``ANALYSING`` is left by :meth:`Attempt.conclude` with the outcome
of :func:`verification.decision.decide`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum

from verification.challenges import (
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
    ABORTED = "aborted"


S = AttemptState
TRANSITIONS: dict[AttemptState, frozenset[AttemptState]] = {
    S.CREATED: frozenset({S.BASELINE, S.ABORTED}),
    S.BASELINE: frozenset({S.CHALLENGE, S.TIMED_OUT, S.ABORTED}),
    S.CHALLENGE: frozenset({S.CHALLENGE, S.ANALYSING, S.TIMED_OUT, S.FAILED, S.ABORTED}),
    S.ANALYSING: frozenset({S.PASSED, S.FAILED, S.REFERRED, S.TIMED_OUT, S.ABORTED}),
    S.PASSED: frozenset(),
    S.FAILED: frozenset(),
    S.REFERRED: frozenset(),
    S.TIMED_OUT: frozenset(),
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
    """What the engine saw in one analysed frame (``landmarks68=None``: no face)."""

    width: int
    height: int
    landmarks68: Points | None = field(default=None, repr=False)
    box: Box | None = None
    embedding: Vector | None = field(default=None, repr=False)
    frame_hash: str | None = None
    pad_score: float | None = None
    quality: float | None = None  # engine's sharpness/quality score, to pick the best frames

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"frame size must be positive, got {self.width}×{self.height}")
        if self.landmarks68 is not None and self.landmarks68.shape != (68, 2):
            raise ValueError(f"landmarks68 must be (68, 2), got {self.landmarks68.shape}")


NEUTRAL_FACE_GUIDANCE = "verify.guide.neutral_face"


@dataclass(frozen=True, slots=True)
class NeutralLimits:
    """What a neutral face is, in absolute measures (dlib landmarks, measured on the clips of
    ``liveness_video``: neutral mouth width 0.75–0.92 of the inter-ocular distance, grins
    1.0–1.1; closed mouths MAR < 0.1, talking 0.2–0.3, an "O" 0.6–0.75).

    The baseline is the median of a window of frames; a window outside these limits (a grin,
    an open mouth, the head turned or tilted, the eyes shut) is not taken: challenges are
    detected relative to the baseline, so a smiling baseline could never show a smile."""

    max_yaw: float = 20.0
    max_pitch: float = 25.0
    max_mar: float = 0.30
    max_smile: float = 0.95
    min_ear: float = 0.12

    def accepts(self, base: Baseline) -> bool:
        """True when ``base`` is a neutral face."""
        return (
            abs(base.yaw) <= self.max_yaw
            and abs(base.pitch) <= self.max_pitch
            and base.mar <= self.max_mar
            and base.smile <= self.max_smile
            and base.ear >= self.min_ear
        )


@dataclass(frozen=True, slots=True)
class AttemptConfig:
    """Timing rules of an attempt (seconds)."""

    baseline_frames: int = 5
    baseline_timeout: float = 6.0
    max_face_gap: float = 1.0
    analysing_timeout: float = 5.0
    strict_order: bool = True  # a conflicting action before the asked one fails the challenge
    hold_still: bool = True  # a deliberate movement in the pause before an instruction fails
    min_reaction: float = 0.45  # seconds: an onset sooner after the instruction is not credited
    # Seconds after a challenge is met in which the same action restarting is the tail of that
    # movement, not a new one (dlib's yaw dips below the hold level inside one real turn).
    settle: float = 1.5
    # Seconds after a challenge is met in which *any* movement is the aftermath of that one (a
    # wide-open mouth closing throws dlib's yaw past a turn for a frame or two: d12).
    aftermath: float = 0.5
    detectors: DetectorConfig = field(default_factory=DetectorConfig)
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

    @property
    def liveness_passed(self) -> bool:
        """Every challenge met in order (the active part is done)."""
        return all(c.met_at is not None for c in self.challenges)


class Attempt:
    """Drives one attempt: feed ``observe(t, frame)`` in time order, ``tick(t)`` on a timer."""

    def __init__(self, plan: ChallengePlan, config: AttemptConfig | None = None) -> None:
        self.plan = plan
        self.config = config or AttemptConfig()
        self._state = S.CREATED
        self._index = 0
        self._reason: str | None = None
        self._started: float | None = None
        self._ended: float | None = None
        self._since: float = 0.0  # when the current state was entered
        self._last_t: float | None = None
        self._last_face: float | None = None
        self._baseline: Baseline | None = None
        self._pending: list[FrameMeasures] = []
        self._not_neutral = False  # the last baseline window was not a neutral face
        self._window: list[Relative] = []
        self._holding = False
        self._held: dict[int, float] = {}
        self._shown: dict[int, float] = {}
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
    def events(self) -> tuple[ProgressEvent, ...]:
        """Every event so far, in order."""
        return tuple(self._events)

    def start(self, t: float) -> list[ProgressEvent]:
        """Begin collecting the neutral baseline."""
        mark = len(self._events)
        self._move(S.BASELINE, t)
        self._started = t
        self._emit(t, EventKind.BASELINE_STARTED)
        return self._events[mark:]

    def observe(self, t: float, frame: FrameObservation) -> list[ProgressEvent]:
        """Feed one analysed frame; returns the events it caused."""
        mark = len(self._events)
        if self._last_t is not None and t <= self._last_t:
            logger.debug("dropping out-of-order frame at %s (last %s)", t, self._last_t)
            return []
        self._last_t = t
        self._check_timeouts(t)
        if self._state not in (S.BASELINE, S.CHALLENGE):
            return self._events[mark:]
        measures = None
        if frame.landmarks68 is not None:
            measures = measure(frame.landmarks68, frame.width, frame.height)
            self._last_face = t
        rel = relative(t, measures, self._baseline) if measures and self._baseline else None
        self._samples.append(Sample(t, frame, measures, rel))
        if measures is not None and self._state is S.BASELINE:
            self._collect_baseline(t, measures)
        elif rel is not None and self._state is S.CHALLENGE:
            self._window.append(rel)
            self._judge(t)
        return self._events[mark:]

    def tick(self, t: float) -> list[ProgressEvent]:
        """Apply timeouts at time ``t`` (call it when frames stop coming, e.g. every 0.5 s)."""
        mark = len(self._events)
        if self._last_t is None or t > self._last_t:
            self._check_timeouts(t)
        return self._events[mark:]

    def abort(self, t: float, reason: str = "attempt.aborted") -> list[ProgressEvent]:
        """Stop the attempt (advisor cancelled, call ended)."""
        mark = len(self._events)
        self._finish(S.ABORTED, t, reason, EventKind.ABORTED)
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
        self._reason = reason
        self._ended = t
        self._emit(t, kind, reason or "")

    def _collect_baseline(self, t: float, measures: FrameMeasures) -> None:
        """Take the latest ``baseline_frames`` faces as the baseline once they are neutral."""
        self._pending.append(measures)
        if len(self._pending) < self.config.baseline_frames:
            return
        del self._pending[: -self.config.baseline_frames]
        candidate = Baseline.from_frames(self._pending)
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
        pause = self.plan.challenges[index].pause
        self._emit(t, EventKind.HOLD, f"{pause:.2f}")
        if pause <= 0:
            self._show(t)

    def _show(self, t: float) -> None:
        self._holding = False
        self._shown[self._index] = t
        self._emit(t, EventKind.CHALLENGE_SHOWN)

    def _judge(self, t: float) -> None:
        action = self.plan.challenges[self._index].action
        cfg = self.config.detectors
        shown = None if self._holding else self._shown[self._index]
        if self.config.hold_still:
            # The window starts with the pause: a movement begun in it may complete later.
            early = [
                d
                for d in detect_all(self._window, cfg)
                if d.action in forbidden_before(action)
                and (shown is None or d.start < shown)
                and not self._tail_of_previous(d)
            ]
            if early:
                logger.info(
                    "attempt %s: %s before the instruction (%s) appeared",
                    self.plan.nonce[:6],
                    early[0].action,
                    action,
                )
                self._finish(
                    S.FAILED, t, "liveness.moved_before_prompt", EventKind.MOVED_BEFORE_PROMPT
                )
                return
        if shown is None:
            return
        since = [r for r in self._window if r.t >= shown]
        # The last sample before ``min_reaction`` anchors the window: an excursion already
        # under way there began too soon after the instruction and is not credited.
        soon = sum(1 for r in since if r.t < shown + self.config.min_reaction)
        hit = detect(action, since[max(soon - 1, 0) :], cfg)
        if self.config.strict_order:
            bad = [d for d in detect_all(since, cfg) if d.action in conflicts(action)]
            if bad and (hit is None or bad[0].end < hit.end):
                logger.info("attempt %s: %s before %s", self.plan.nonce[:6], bad[0].action, action)
                self._finish(S.FAILED, t, "liveness.wrong_action", EventKind.WRONG_ACTION)
                return
        if hit is None:
            return
        self._met[self._index] = hit
        self._emit(t, EventKind.CHALLENGE_MET, hit.action.value)
        if self._index + 1 < len(self.plan.challenges):
            self._hold(self._index + 1, t)
        else:
            self._holding = False
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
            elif t - self._shown[self._index] > challenge.time_limit:
                self._finish(
                    S.TIMED_OUT, t, "liveness.challenge_timeout", EventKind.CHALLENGE_TIMED_OUT
                )
        elif self._state is S.ANALYSING and t - self._since > cfg.analysing_timeout:
            self._finish(S.TIMED_OUT, t, "liveness.decision_timeout", EventKind.DECISION_TIMED_OUT)
