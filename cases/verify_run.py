"""One identity-verification attempt of a call, owned by one task from its start to its decision.

::

    OBSERVING -last challenge met, or the attempt ended-> DECIDING -decision-> STORING -> DONE

Everything about the attempt — the :class:`~verification.attempt.Attempt` state machine, the
images of its bound frames, their embeddings — belongs to the run's task and is touched only
between the task's own awaits; other coroutines read the published :attr:`VerifyRun.progress`
snapshot. A stop (hang-up, page closed, the advisor's cancel, shutdown) is a *request* the task
honours between two frames while it is OBSERVING; once the run is DECIDING, the decision stands
whatever happens: a passed attempt stays passed, with its evidence.

The attempt's clock is the frames' capture time minus the server's own stalls
(:class:`AttemptClock`): when analysis falls behind, the customer's time limits pause; when the
server stalls too long the attempt ends *undecided*, which counts for nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, Protocol

from av import VideoFrame

from cases.errors import InvalidTransition
from media.tap import tap_or_idle
from signaling.messages import VerifyProgress
from verification.attempt import Attempt, AttemptResult, AttemptState, FrameObservation
from verification.binding import BoundFrame, Role
from verification.config import VerificationConfig
from verification.decision import Decision
from verification.engine import FrameAnalysis, Template, Tracker
from verification.policy import Policy
from verification.service import EngineService
from verification.types import Face, Image
from verification.verdict import BoundScore, FrameScores, candidate_score, checkable, judge

log = logging.getLogger(__name__)


class CustomerVideo(Protocol):
    """Where the customer's frames come from (``media.CallMedia``)."""

    def latest_customer_frame(self) -> VideoFrame | None:
        """The latest decoded customer frame, or None."""
        ...


class Phase(StrEnum):
    """Where a run is."""

    OBSERVING = "observing"
    DECIDING = "deciding"
    STORING = "storing"
    DONE = "done"


_MOVES: dict[Phase, frozenset[Phase]] = {
    Phase.OBSERVING: frozenset({Phase.DECIDING}),
    Phase.DECIDING: frozenset({Phase.STORING}),
    Phase.STORING: frozenset({Phase.DONE}),
    Phase.DONE: frozenset(),
}
Stored = Literal["passed", "failed", "referred", "aborted", "undecided"]
_STORED: dict[str, Stored] = {"pass": "passed", "fail": "failed", "refer": "referred"}


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """What a run ended with: the stored state, and the decision when there was one."""

    state: Stored
    reason: str | None
    result: AttemptResult
    decision: Decision | None = None
    scores: FrameScores | None = None
    decision_ms: float | None = None


class AttemptClock:
    """The attempt's time: the frames' capture time minus the server's own stalls.

    After each frame the run says how long it was busy with it. A frame that kept the server
    busy past ``slack`` seconds delayed the next capture; that delay, less one sampling period,
    is the server's stall and is taken off the clock, so the customer's time limits (and the
    "face gone" limit) pause while the server catches up. ``stalled`` past ``max_stall``
    seconds: the attempt cannot be judged fairly (``over``)."""

    def __init__(self, slack: float = 0.3, max_stall: float = 8.0) -> None:
        self.slack = slack
        self.max_stall = max_stall
        self.stalled = 0.0
        self._last: float | None = None  # capture time of the last frame
        self._busy = 0.0  # seconds the server spent on it
        self._period = 0.1

    def frame(self, captured: float) -> float:
        """The attempt time of a frame captured at ``captured`` (monotonic seconds)."""
        if self._last is not None and self._busy > self.slack:
            gap = captured - self._last
            self.stalled += max(0.0, min(gap, self._busy) - self._period)
        self._last = captured
        return captured - self.stalled

    def done(self, captured: float, now: float, period: float) -> None:
        """The frame captured at ``captured`` was handled at ``now``; frames come every
        ``period`` seconds."""
        self._busy = max(0.0, now - captured)
        self._period = period

    def now(self, wall: float) -> float:
        """The attempt time at monotonic time ``wall`` (for ticks between frames)."""
        return wall - self.stalled

    @property
    def over(self) -> bool:
        """The server stalled too long for the attempt to be judged fairly."""
        return self.stalled > self.max_stall or self._busy > self.max_stall


def _frame_hash(image: Image) -> str:
    return hashlib.sha256(image.tobytes()).hexdigest()[:32]


def _observation(image: Image, analysis: FrameAnalysis, frame_id: int) -> FrameObservation:
    face = analysis.face
    return FrameObservation(
        width=int(image.shape[1]),
        height=int(image.shape[0]),
        landmarks68=None if face is None else face.landmarks68,
        box=None if face is None else face.box,
        frame_hash=_frame_hash(image),
        quality=max(0.0, candidate_score(analysis)),
        frame_id=frame_id,
        checkable=checkable(analysis),
    )


def progress_of(attempt_id: str, attempt: Attempt, guidance: str | None) -> VerifyProgress:
    """What both pages are told: the phase, the challenge *on screen* only, the count met."""
    state = attempt.state
    result = attempt.result()
    met = sum(1 for c in result.challenges if c.met_at is not None)
    current = attempt.current
    phase: Literal["baseline", "hold", "challenge", "analysing"] = (
        "baseline"
        if state in (AttemptState.CREATED, AttemptState.BASELINE)
        else "hold"
        if attempt.holding
        else "challenge"
        if state is AttemptState.CHALLENGE
        else "analysing"
    )
    return VerifyProgress(
        attempt_id=attempt_id,
        phase=phase,
        index=current[0] if current else met,
        challenge=current[1].value if current else None,
        met=met,
        total=len(attempt.plan.challenges),
        guidance=guidance,
    )


@dataclass(slots=True)
class RunContext:
    """What a run works with (the desk's collaborators and settings)."""

    engine: EngineService
    policy: Policy
    config: VerificationConfig
    service: str
    template: Template
    camera_label: str | None = None
    clock: AttemptClock = field(default_factory=AttemptClock)


class VerifyRun:
    """Drives one attempt (see the module docstring); ``publish`` gets every progress."""

    def __init__(
        self,
        attempt_id: str,
        attempt: Attempt,
        video: CustomerVideo,
        context: RunContext,
        publish: Callable[[VerifyProgress], None],
    ) -> None:
        self.attempt_id = attempt_id
        self.attempt = attempt
        self._video = video
        self._ctx = context
        self._publish_to = publish
        self._phase = Phase.OBSERVING
        self._stop: str | None = None
        self._wake = asyncio.Event()
        self.images: dict[int, tuple[Image, Face]] = {}  # frame id → image of a bound frame
        # Frame id → its embedding, started as soon as the frame is bound or, when the embedder
        # is idle, while it is still a candidate (the best or the random frame of the segment
        # under way), so that little is left to embed once the last challenge is met. A frame
        # bound twice (met and best) is embedded once.
        self._by_frame: dict[int, asyncio.Task[BoundScore]] = {}
        self._frames = 0
        self.hashes: list[str] = []
        self.guidance: str | None = None
        self.progress = progress_of(attempt_id, attempt, None)

    @property
    def phase(self) -> Phase:
        """Where the run is."""
        return self._phase

    def move(self, target: Phase) -> None:
        """Advance through the run's table; an illegal move names the current phase."""
        if target not in _MOVES[self._phase]:
            raise InvalidTransition("verification run", self._phase.value, target.value)
        self._phase = target

    def request_stop(self, reason: str) -> bool:
        """Ask the run to end the attempt as ``reason`` (e.g. ``attempt.aborted``). Honoured
        only while OBSERVING (True); a run that is deciding keeps its decision (False)."""
        if self._phase is not Phase.OBSERVING:
            return False
        self._stop = self._stop or reason
        self._wake.set()
        return True

    async def run(self) -> RunOutcome:
        """Observe until the attempt leaves its challenges, then decide (phase DECIDING)."""
        try:
            await self._observe()
            self.move(Phase.DECIDING)
            return await self._decide()
        finally:
            tasks = list(self._by_frame.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # ---- observing -------------------------------------------------------------------------

    def _rate(self) -> float:
        cfg = self._ctx.config
        return cfg.camera_fps if self.attempt.camera_rate else cfg.sample_fps

    def _publish(self) -> None:
        self.progress = progress_of(self.attempt_id, self.attempt, self.guidance)
        self._publish_to(self.progress)

    async def _observe(self) -> None:
        loop = asyncio.get_running_loop()
        clock = self._ctx.clock
        self.attempt.start(clock.now(loop.time()))
        self._publish()
        tracker = Tracker()
        latest = self._video.latest_customer_frame
        async for tapped in tap_or_idle(latest, self._rate, clock=loop.time):
            if self._stop is not None:
                self.attempt.abort(clock.now(loop.time()), self._stop)
                return
            changed = False
            if tapped is None:
                changed = bool(self.attempt.tick(clock.now(loop.time())))
            else:
                t = clock.frame(tapped.t)
                tracker, changed = await self._frame(t, tapped.rgb, tracker)
                clock.done(tapped.t, loop.time(), 1.0 / self._rate())
                if clock.over and self.attempt.state in _LIVE:
                    log.warning("verification undecided: the server stalled %.1f s", clock.stalled)
                    self.attempt.undecide(clock.now(loop.time()))
            if self.attempt.state not in _LIVE:
                if self.attempt.state is AttemptState.ANALYSING:
                    self._publish()
                return  # timed out or failed: the result follows at once
            if changed:
                self._publish()

    async def _frame(self, t: float, image: Image, tracker: Tracker) -> tuple[Tracker, bool]:
        """Analyse one frame and feed it to the attempt; True when the pages must be told."""
        analysis, tracker = await self._ctx.engine.analyse(image, tracker)
        frame_id = self._frames
        self._frames += 1
        observation = await asyncio.to_thread(_observation, image, analysis, frame_id)
        self.hashes.append(observation.frame_hash or "")
        # The detectors are CPU work: off the loop. Nothing else touches the attempt meanwhile.
        events = await asyncio.to_thread(self.attempt.observe, t, observation)
        self._keep(frame_id, image, analysis.face)
        keys = analysis.quality.message_keys if analysis.issues else ()
        guidance = keys[0] if keys else self.attempt.baseline_guidance
        changed = bool(events) or guidance != self.guidance
        self.guidance = guidance
        return tracker, changed

    def _keep(self, frame_id: int, image: Image, face: Face | None) -> None:
        """Hold the images the attempt may bind; embed each bound frame once final, and one
        candidate ahead while the embedder has nothing else to do."""
        wanted = self.attempt.keep
        if face is not None and frame_id in wanted:
            self.images[frame_id] = (image, face)
        for stale in [i for i in self.images if i not in wanted]:
            del self.images[stale]
        bound_frames = {b.frame for b in self.attempt.bound}
        for bound in self.attempt.bound:
            if bound.frame in self.images:
                self._embedding(bound.frame, bound)
        for frame in [f for f in self._by_frame if f not in wanted and f not in bound_frames]:
            self._by_frame.pop(frame).cancel()
        if all(task.done() for task in self._by_frame.values()):
            ahead = [f for f in self.images if f not in self._by_frame]
            if ahead:
                latest = max(ahead)
                self._embedding(latest, BoundFrame(latest, 0.0, Role.RANDOM, "candidate"))

    def _embedding(self, frame: int, bound: BoundFrame) -> asyncio.Task[BoundScore]:
        """The embedding of ``frame`` (started now unless it already was)."""
        task = self._by_frame.get(frame)
        if task is None:
            image, face = self.images[frame]
            job = self._ctx.engine.embed_bound(bound, image, face)
            task = asyncio.create_task(job, name=f"embed-frame:{self.attempt_id}")
            self._by_frame[frame] = task
        return task

    # ---- deciding --------------------------------------------------------------------------

    async def _decide(self) -> RunOutcome:
        loop = asyncio.get_running_loop()
        started = loop.time()
        result = self.attempt.result()
        if result.state is AttemptState.ABORTED:
            return RunOutcome("aborted", result.reason, result)
        if result.state is AttemptState.UNDECIDED:
            return RunOutcome("undecided", result.reason, result)
        scores = await self._scores(result)
        if scores is None and result.state is AttemptState.ANALYSING:
            self.attempt.undecide(self._ctx.clock.now(loop.time()))
            return RunOutcome("undecided", "attempt.server_busy", self.attempt.result())
        decision = await asyncio.to_thread(
            judge, self._ctx.service, result, scores, self._ctx.policy, self._ctx.camera_label
        )
        if result.state is AttemptState.ANALYSING:
            codes = ",".join(decision.codes)
            self.attempt.conclude(self._ctx.clock.now(loop.time()), decision.outcome.state, codes)
        elapsed = round((loop.time() - started) * 1000.0, 1)
        stored = _STORED[decision.outcome.value]
        return RunOutcome(stored, None, self.attempt.result(), decision, scores, elapsed)

    async def _scores(self, result: AttemptResult) -> FrameScores | None:
        """Scores of the bound frames (None: the embedder did not answer in time)."""
        engine, timeout = self._ctx.engine, self._ctx.config.decision_seconds
        if result.state is not AttemptState.ANALYSING:
            if not engine.has_pad or not self.images:
                return None
            items = list(self.images.values())[:5]
            pads = [s for s in await engine.live_scores(items) if s is not None]
            return FrameScores(self._ctx.template.model_key, pad=tuple(pads))
        bound = [b for b in self.attempt.bound if b.frame in self._by_frame]
        try:
            vectors = await asyncio.wait_for(
                asyncio.gather(*(self._by_frame[b.frame] for b in bound)), timeout
            )
            # Each embedding under the role its frame was finally bound with.
            scored = [dataclasses.replace(v, frame=b) for v, b in zip(vectors, bound, strict=True)]
            return await asyncio.wait_for(engine.frame_scores(self._ctx.template, scored), timeout)
        except TimeoutError:
            log.warning("verification undecided: no scores within %.1f s", timeout)
            return None

    @property
    def stalled(self) -> float:
        """Seconds of the server's own stalls taken off the attempt's clock."""
        return self._ctx.clock.stalled


_LIVE = (AttemptState.BASELINE, AttemptState.CHALLENGE)
