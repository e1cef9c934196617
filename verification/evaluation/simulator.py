"""Attempt simulator: the real engine, attempt state machine and decision fed with a presenter.

For each attempt: draw a challenge plan (``verification.challenges.draw_challenges``; the
benchmark injects a seeded ``random.Random``, production draws use ``secrets``), start a
:class:`verification.attempt.Attempt`, then ask the presenter for the frame at ``t`` while the
screen shows the current challenge (``None`` in the baseline and the "hold still" pauses), run
:meth:`FaceEngine.analyse` on it (with a :class:`Tracker`, as the server does) and feed the
observation to the attempt, until the attempt leaves the challenge phase or ``max_seconds``.
Frames are taken at ``fps``, and at ``camera_fps`` while the attempt asks for the camera's rate
(a blink coming or asked), as the server's tap does.

The identity binding is the server's own: each frame the attempt binds
(:mod:`verification.binding`) is embedded as soon as it is final, as the server does in its
worker while the customer goes on (``embedded_during_ms``); what is left when the last challenge
is met — its frames — is embedded after it, then :func:`verification.verdict.judge` decides with
the policy. That wall time is the decision latency after the last challenge.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from verification.attempt import Attempt, AttemptConfig, AttemptState, FrameObservation
from verification.binding import BoundFrame
from verification.challenges import PAUSE, Action, ChallengePlan, draw_challenges
from verification.decision import Decision
from verification.engine import FaceEngine, FrameAnalysis, Template, Tracker
from verification.evaluation.attacks import Presenter
from verification.policy import Policy, Severity, load_policy
from verification.types import Face, Image
from verification.verdict import (
    BoundScore,
    FrameScores,
    candidate_score,
    checkable,
    embed_bound,
    frame_scores,
    judge,
)

logger = logging.getLogger(__name__)

KEEP_FRAMES = 3  # best frames embedded for the decision (cases/verify.py keeps 4)


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """What one simulated attempt ended with."""

    kind: str  # presenter kind ("genuine", "photo_still", ...)
    actions: tuple[str, ...]
    state: str  # the attempt's final state (after the decision)
    reason: str | None  # why the attempt itself stopped before the decision (None: it got there)
    outcome: str  # pass / fail / refer
    reasons: tuple[str, ...]  # every reason code of the decision
    stopped_by: tuple[str, ...]  # the codes of fail (else refer) severity: what stopped it
    liveness_passed: bool
    match_score: float | None
    accepted: bool  # outcome == pass
    completed_at: float | None  # seconds from the first challenge shown to the last one met
    completed_total: float | None  # from the end of the baseline (first "hold still") likewise
    decision_ms: float | None  # wall time from the last challenge met to the decision
    scoring_ms: float  # of which: embedding and comparing what was left after the last challenge
    embedded_during_ms: float  # embedding done progressively during the challenges
    frames: int
    bound: int = 0  # frames tied to the identity
    unchecked: int = 0  # of which could not be checked when embedded
    min_reference: float | None = None  # the lowest similarity of a bound frame to the reference
    timeline: tuple[tuple[float, str, str], ...] = ()  # (t, event, action or detail)


def observation(
    image: Image, analysis: FrameAnalysis, frame_id: int = -1, digest: str | None = None
) -> FrameObservation:
    """The attempt's view of one analysed frame (as the server builds it)."""
    height, width = image.shape[:2]
    face = analysis.face
    return FrameObservation(
        width=width,
        height=height,
        landmarks68=None if face is None else face.landmarks68,
        box=None if face is None else face.box,
        frame_hash=digest or hashlib.sha256(image.tobytes()).hexdigest(),
        quality=max(0.0, candidate_score(analysis)),
        frame_id=frame_id,
        checkable=checkable(analysis),
    )


def stopped_by(decision: Decision) -> tuple[str, ...]:
    """The reason codes that made the outcome (fail ones; else refer ones)."""
    for severity in (Severity.FAIL, Severity.REFER):
        codes = tuple(r.code for r in decision.reasons if r.severity is severity)
        if codes:
            return codes
    return ()


class _Binder:
    """Keeps the images the attempt may bind and embeds each bound frame once it is final."""

    def __init__(self, engine: FaceEngine) -> None:
        self.engine = engine
        self.images: dict[int, tuple[Image, Face]] = {}
        self.scored: dict[BoundFrame, BoundScore] = {}
        self.ms = 0.0

    def keep(self, attempt: Attempt, frame_id: int, image: Image, face: Face | None) -> None:
        wanted = attempt.keep
        if face is not None and frame_id in wanted:
            self.images[frame_id] = (image, face)
        for stale in [i for i in self.images if i not in wanted]:
            del self.images[stale]

    def embed_final(self, attempt: Attempt) -> float:
        """Embed the final bound frames not embedded yet; returns the milliseconds it took."""
        start = time.perf_counter()
        for bound in attempt.bound:
            if bound not in self.scored and bound.frame in self.images:
                # A frame bound twice (met and best) is embedded once, as the server does.
                same = next((s for b, s in self.scored.items() if b.frame == bound.frame), None)
                self.scored[bound] = (
                    embed_bound(self.engine, bound, *self.images[bound.frame])
                    if same is None
                    else dataclasses.replace(same, frame=bound)
                )
        return (time.perf_counter() - start) * 1000


def simulate(
    engine: FaceEngine,
    reference: Template,
    presenter: Presenter,
    vocabulary: Sequence[Action],
    rng: random.Random,
    *,
    policy: Policy | None = None,
    service: str = "pin_change",
    fps: float = 10.0,
    camera_fps: float = 30.0,
    max_seconds: float = 40.0,
    time_limit: float = 8.0,
    config: AttemptConfig | None = None,
    camera_label: str | None = None,
    plan: ChallengePlan | None = None,
    pause: tuple[float, float] | None = None,
) -> AttemptOutcome:
    """One attempt of ``presenter`` against ``reference`` (see the module docstring); ``plan``
    replaces the drawn plan (the bench's per-action detection runs plans of one challenge);
    ``pause`` the range of the "hold still" pauses (default: the server's)."""
    policy = policy or load_policy()
    plan = plan or draw_challenges(
        3, vocabulary, rng, time_limit=time_limit, pause=PAUSE if pause is None else pause
    )
    attempt = Attempt(plan, config, rng)
    attempt.start(0.0)
    tracker = Tracker()
    binder = _Binder(engine)
    frames = 0
    t = 0.0
    while t <= max_seconds and attempt.state in (AttemptState.BASELINE, AttemptState.CHALLENGE):
        current = attempt.current
        image = presenter.frame(t, None if current is None else current[1].value)
        analysis = engine.analyse(image, tracker)
        attempt.observe(t, observation(image, analysis, frames))
        binder.keep(attempt, frames, image, analysis.face)
        after: AttemptState = attempt.state
        if after is not AttemptState.ANALYSING:
            binder.ms += binder.embed_final(attempt)  # while the customer goes on
        frames += 1
        t += 1.0 / (camera_fps if attempt.camera_rate else fps)
    attempt.tick(t)
    result = attempt.result()
    start = time.perf_counter()
    scoring_ms = binder.embed_final(attempt)
    scores: FrameScores | None = None
    if binder.scored:
        scores = frame_scores(engine, reference, list(binder.scored.values()))
    decision = judge(service, result, scores, policy, camera_label)
    decision_ms = None
    if result.state is AttemptState.ANALYSING:
        decision_ms = (time.perf_counter() - start) * 1000
        attempt.conclude(t, decision.outcome.state, ",".join(decision.codes))
    shown = [c.shown_at for c in result.challenges if c.shown_at is not None]
    met = [c.met_at for c in result.challenges if c.met_at is not None]
    completed = max(met) - min(shown) if result.liveness_passed and met and shown else None
    held = [c.held_from for c in result.challenges if c.held_from is not None]
    total = max(met) - min(held) if completed is not None and held else None
    final = attempt.result()
    return AttemptOutcome(
        kind=presenter.kind,
        actions=tuple(c.action.value for c in plan.challenges),
        state=final.state.value,
        reason=result.reason,
        outcome=decision.outcome.value,
        reasons=decision.codes,
        stopped_by=stopped_by(decision),
        liveness_passed=result.liveness_passed,
        match_score=decision.match_score,
        accepted=decision.outcome.value == "pass",
        completed_at=completed,
        completed_total=total,
        decision_ms=decision_ms,
        scoring_ms=scoring_ms,
        embedded_during_ms=binder.ms,
        frames=frames,
        bound=len(binder.scored),
        unchecked=0 if scores is None else len(scores.unchecked),
        min_reference=min(scores.reference) if scores and scores.reference else None,
        timeline=tuple(
            (round(e.t, 2), e.kind.value, e.detail or (e.action.value if e.action else ""))
            for e in final.events
        ),
    )
