"""Attempt simulator: the real engine, attempt state machine and decision fed with a presenter.

For each attempt: draw a challenge plan (``verification.challenges.draw_challenges``; the
benchmark injects a seeded ``random.Random``, production draws use ``secrets``), start a
:class:`verification.attempt.Attempt`, then at ``fps`` ask the presenter for the frame at ``t``
while the screen shows the current challenge, run :meth:`FaceEngine.analyse` on it (with a
:class:`Tracker`, as the server does) and feed the observation to the attempt, keeping the best
frames as the server does (:class:`verification.verdict.BestFrames`), until the attempt leaves
the challenge phase or ``max_seconds``.

The decision is the server's own: :func:`verification.verdict.verdict` embeds the best frames,
compares them with the reference template, runs the passive checks (and PAD when the engine has
a model) and calls :func:`verification.decision.decide` with the policy. Its wall time is the
decision latency after the last challenge.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from verification.attempt import Attempt, AttemptConfig, AttemptState, FrameObservation
from verification.challenges import Action, draw_challenges
from verification.decision import Decision
from verification.engine import FaceEngine, Template, Tracker
from verification.evaluation.attacks import Presenter
from verification.policy import Policy, Severity, load_policy
from verification.types import Face, Image
from verification.verdict import BestFrames, FrameScores, judge, score_frames, similarities_to

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
    scoring_ms: float  # of which: embedding, comparing, PAD-scoring the best frames
    embedded_during_ms: float  # embedding done progressively during the challenges (if enabled)
    frames: int
    timeline: tuple[tuple[float, str, str], ...] = ()  # (t, event, action or detail)


def _observation(image: Image, face: Face | None) -> FrameObservation:
    height, width = image.shape[:2]
    return FrameObservation(
        width=width,
        height=height,
        landmarks68=None if face is None else face.landmarks68,
        box=None if face is None else face.box,
        frame_hash=hashlib.sha256(image.tobytes()).hexdigest(),
    )


def stopped_by(decision: Decision) -> tuple[str, ...]:
    """The reason codes that made the outcome (fail ones; else refer ones)."""
    for severity in (Severity.FAIL, Severity.REFER):
        codes = tuple(r.code for r in decision.reasons if r.severity is severity)
        if codes:
            return codes
    return ()


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
    max_seconds: float = 40.0,
    time_limit: float = 8.0,
    config: AttemptConfig | None = None,
    keep: int = KEEP_FRAMES,
    progressive: bool = False,
    camera_label: str | None = None,
) -> AttemptOutcome:
    """One attempt of ``presenter`` against ``reference`` (see the module docstring).

    ``progressive``: embed a frame as soon as it enters the best frames (the server would do it
    in its worker between frames), so that only the comparison and the checks are left after
    the last challenge.
    """
    policy = policy or load_policy()
    plan = draw_challenges(3, vocabulary, rng, time_limit=time_limit)
    attempt = Attempt(plan, config)
    attempt.start(0.0)
    tracker = Tracker()
    best = BestFrames(keep)
    vectors: dict[int, object] = {}  # id(image) → embedding, for progressive embedding
    embedded_ms = 0.0
    frames = 0
    t = 0.0
    while t <= max_seconds and attempt.state in (AttemptState.BASELINE, AttemptState.CHALLENGE):
        current = attempt.current
        image = presenter.frame(t, None if current is None else current[1].value)
        analysis = engine.analyse(image, tracker)
        attempt.observe(t, _observation(image, analysis.face))
        frames += 1
        if best.offer(analysis, image) and progressive and analysis.face is not None:
            start = time.perf_counter()
            vectors[id(image)] = engine.embed(image, analysis.face)
            embedded_ms += (time.perf_counter() - start) * 1000
        t = frames / fps
    attempt.tick(t)
    result = attempt.result()
    decision_ms = None
    start = time.perf_counter()
    embed_ms = 0.0
    scores: FrameScores | None = None
    if result.state is AttemptState.ANALYSING and best.items:
        if progressive:
            kept = [vectors[id(image)] for _, image, _ in best.items]
            scores = similarities_to(engine, reference, kept)  # type: ignore[arg-type]
            pads = [engine.live_score(i, f) for i, f in best.frames]
            scores = FrameScores(
                scores.model_key,
                scores.similarities,
                scores.identity,
                tuple(p for p in pads if p is not None),
            )
        else:
            scores = score_frames(engine, reference, best.frames)
        embed_ms = (time.perf_counter() - start) * 1000
    elif best.items and engine.pad is not None:
        scores = score_frames(engine, reference, best.frames, embed=False)
    decision = judge(service, result, scores, policy, camera_label)
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
        scoring_ms=embed_ms,
        embedded_during_ms=embedded_ms,
        frames=frames,
        timeline=tuple(
            (round(e.t, 2), e.kind.value, e.detail or (e.action.value if e.action else ""))
            for e in final.events
        ),
    )
