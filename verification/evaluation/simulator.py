"""Attempt simulator: the real engine and attempt state machine fed with a presenter's frames.

For each attempt: draw a challenge plan (``verification.challenges.draw_challenges``; the
benchmark injects a seeded ``random.Random``, production draws use ``secrets``), start a
:class:`verification.attempt.Attempt`, then at ``fps`` ask the presenter for the frame at ``t``
while the screen shows the current challenge, run :meth:`FaceEngine.analyse` on it and feed the
observation to the attempt, until the attempt leaves the challenge phase or ``max_seconds``.

The decision after the last challenge: the best frames (largest faces) are embedded and
compared with the reference template. ``verification.decision`` (helper B) is not in the tree
yet, so :func:`stand_in_decision` decides here: liveness passed **and** best similarity ≥ the
match threshold → accepted. Replace it with ``decision.decide`` when that lands.
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
from verification.engine import FaceEngine, Template, Tracker
from verification.evaluation.attacks import Presenter
from verification.types import Face, Image

logger = logging.getLogger(__name__)

BEST_FRAMES = 3


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """What one simulated attempt ended with."""

    kind: str  # presenter kind ("genuine", "photo_still", ...)
    actions: tuple[str, ...]
    state: str  # the attempt's state when the challenges ended
    reason: str | None
    liveness_passed: bool
    similarity: float | None
    accepted: bool
    completed_at: float | None  # attempt time at which the last challenge was met
    decision_ms: float | None  # wall time of the decision after the last challenge
    frames: int


def _observation(image: Image, face: Face | None) -> FrameObservation:
    height, width = image.shape[:2]
    return FrameObservation(
        width=width,
        height=height,
        landmarks68=None if face is None else face.landmarks68,
        box=None if face is None else face.box,
        frame_hash=hashlib.sha256(image.tobytes()).hexdigest(),
    )


def stand_in_decision(
    engine: FaceEngine,
    reference: Template,
    best: Sequence[tuple[Image, Face]],
    threshold: float,
) -> float | None:
    """Best similarity of the ``best`` frames to ``reference`` (None without frames)."""
    scores = [engine.compare(reference, engine.embed(image, face)) for image, face in best]
    return max(scores) if scores else None


def simulate(
    engine: FaceEngine,
    reference: Template,
    presenter: Presenter,
    vocabulary: Sequence[Action],
    rng: random.Random,
    *,
    threshold: float,
    fps: float = 10.0,
    max_seconds: float = 40.0,
    config: AttemptConfig | None = None,
) -> AttemptOutcome:
    """One attempt of ``presenter`` against ``reference`` (see the module docstring)."""
    plan = draw_challenges(3, vocabulary, rng)
    attempt = Attempt(plan, config)
    attempt.start(0.0)
    tracker = Tracker()
    best: list[tuple[float, Image, Face]] = []
    frames = 0
    t = 0.0
    while t <= max_seconds and attempt.state in (AttemptState.BASELINE, AttemptState.CHALLENGE):
        current = attempt.current
        image = presenter.frame(t, None if current is None else current[1].value)
        analysis = engine.analyse(image, tracker)
        attempt.observe(t, _observation(image, analysis.face))
        frames += 1
        if analysis.face is not None:
            best.append((analysis.face.box.w, image, analysis.face))
            best = sorted(best, key=lambda item: -item[0])[:BEST_FRAMES]
        t = frames / fps
    attempt.tick(t)
    result = attempt.result()
    similarity = None
    decision_ms = None
    if result.liveness_passed:
        start = time.perf_counter()
        similarity = stand_in_decision(engine, reference, [(i, f) for _, i, f in best], threshold)
        decision_ms = (time.perf_counter() - start) * 1000
    met = [c.met_at for c in result.challenges if c.met_at is not None]
    accepted = result.liveness_passed and similarity is not None and similarity >= threshold
    return AttemptOutcome(
        kind=presenter.kind,
        actions=tuple(c.action.value for c in plan.challenges),
        state=result.state.value,
        reason=result.reason,
        liveness_passed=result.liveness_passed,
        similarity=similarity,
        accepted=accepted,
        completed_at=max(met) if result.liveness_passed and met else None,
        decision_ms=decision_ms,
        frames=frames,
    )
