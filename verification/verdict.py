"""The decision step after the last challenge, shared by the server and the attempt simulator.

Two halves, so that the engine-bound part can run in a worker process in one round trip while
the rest stays a pure function:

* :func:`score_frames` (needs a :class:`~verification.engine.FaceEngine`): embeds the attempt's
  best frames, compares them with the reference template, measures how alike they are to each
  other (the identity check) and asks the PAD model, when there is one, for live scores.
* :func:`judge` (pure): runs :func:`verification.passive.analyse` and the PAD check on those
  scores and the attempt's samples, then :func:`verification.decision.decide`.

:func:`verdict` chains both (the simulator, and a worker that holds the engine). An attempt that
did not reach ``ANALYSING`` (timed out, wrong action, face lost, aborted) is decided on its
reason alone: no frame is embedded, exactly as the server does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from verification import passive
from verification.attempt import AttemptResult, AttemptState
from verification.decision import Decision, MatchInput, decide
from verification.engine import FaceEngine, FrameAnalysis, Template
from verification.policy import Policy
from verification.types import Face, Image, Vector

BEST_FRAMES = 3  # frames embedded for the match; the policy's top_k averages the best of them


def candidate_score(analysis: FrameAnalysis) -> float:
    """Big, sharp, frontal faces make the best evidence and the best match (-1: unusable)."""
    face = analysis.face
    if face is None or analysis.issues:
        return -1.0
    sharpness = float(analysis.quality.measures.get("sharpness", 1.0))
    return face.box.w * face.box.h * min(sharpness, 100.0)


@dataclass(slots=True)
class BestFrames:
    """The ``keep`` best frames of an attempt so far, by :func:`candidate_score`, best first."""

    keep: int = BEST_FRAMES
    items: list[tuple[float, Image, Face]] = field(default_factory=list)

    def offer(self, analysis: FrameAnalysis, image: Image) -> bool:
        """Keep ``image`` if it is among the best; True when it was kept."""
        score = candidate_score(analysis)
        if analysis.face is None or score <= 0:
            return False
        if len(self.items) >= self.keep and score <= self.items[-1][0]:
            return False
        self.items.append((score, image, analysis.face))
        self.items.sort(key=lambda item: item[0], reverse=True)
        del self.items[self.keep :]
        return True

    @property
    def frames(self) -> list[tuple[Image, Face]]:
        """``(image, face)`` best first."""
        return [(image, face) for _, image, face in self.items]


@dataclass(frozen=True, slots=True)
class FrameScores:
    """What the engine said about the best frames (empty: nothing was embedded)."""

    model_key: str
    similarities: tuple[float, ...] = ()  # each best frame vs the reference template
    identity: tuple[float, ...] = ()  # best frames 2… vs best frame 1 (same person throughout)
    pad: tuple[float, ...] = ()  # PAD live scores (empty without a PAD model)
    vectors: tuple[Vector, ...] = field(default=(), repr=False)


def similarities_to(
    engine: FaceEngine, template: Template, vectors: Sequence[Vector]
) -> FrameScores:
    """Scores from embeddings computed earlier (e.g. progressively during the challenges)."""
    sims = tuple(engine.compare(template, v) for v in vectors)
    identity = tuple(engine.embedder.similarity(vectors[0], v) for v in vectors[1:])
    return FrameScores(template.model_key, sims, identity, (), tuple(vectors))


def score_frames(
    engine: FaceEngine,
    template: Template,
    best: Sequence[tuple[Image, Face]],
    *,
    embed: bool = True,
) -> FrameScores:
    """Embed ``best`` (best first), compare with ``template``, PAD-score them.

    ``embed=False``: PAD scores only (cheap; for an attempt that failed before the match).
    """
    pads = tuple(s for s in (engine.live_score(i, f) for i, f in best) if s is not None)
    if not best or not embed:
        return FrameScores(template.model_key, pad=pads)
    vectors = [engine.embed(image, face) for image, face in best]
    scores = similarities_to(engine, template, vectors)
    return FrameScores(scores.model_key, scores.similarities, scores.identity, pads, scores.vectors)


def judge(
    service: str,
    result: AttemptResult,
    scores: FrameScores | None,
    policy: Policy,
    camera_label: str | None = None,
) -> Decision:
    """The decision from the attempt and the frame scores (pure: no engine, no I/O).

    An attempt that failed before ``ANALYSING`` (timeout, wrong action, face lost) fails on its
    reason; the landmark-only passive checks (planarity, frozen, camera label) and the PAD
    scores in ``scores``, if any, are added to its reasons as evidence.
    """
    findings: list[passive.Finding] = []
    match: MatchInput | None = None
    if result.state is AttemptState.ANALYSING and scores is not None and scores.similarities:
        cfg = policy.passive_for(scores.model_key)
        findings = [*passive.analyse(result, cfg, scores.identity, camera_label)]
        findings += passive.check_pad(scores.pad, cfg) if scores.pad else []
        match = MatchInput(scores.model_key, scores.similarities)
    elif result.state is not AttemptState.ANALYSING:
        # The attempt failed already; the landmark-only checks cost nothing and tell the advisor
        # (and the evidence) whether a photo was in front of the camera, not just "too slow".
        cfg = policy.passive
        findings = [
            *passive.check_planarity(result.samples, cfg),
            *passive.check_frozen(result.samples, cfg),
            *passive.check_camera_label(camera_label),
        ]
        findings += passive.check_pad(scores.pad, cfg) if scores is not None else []
    return decide(service, result, findings, match, policy)


def verdict(
    engine: FaceEngine,
    service: str,
    result: AttemptResult,
    template: Template,
    best: Sequence[tuple[Image, Face]],
    policy: Policy,
    camera_label: str | None = None,
) -> tuple[Decision, FrameScores | None]:
    """:func:`score_frames` then :func:`judge`.

    Frames are embedded only when the attempt reached ``ANALYSING``; an attempt that failed
    before is still PAD-scored when the engine has a PAD model (a few ms per frame), so that a
    photo stopped by a timeout is also named as a spoof in the reasons.
    """
    scores = None
    if best and (result.state is AttemptState.ANALYSING or engine.pad is not None):
        embed = result.state is AttemptState.ANALYSING
        scores = score_frames(engine, template, best, embed=embed)
    return judge(service, result, scores, policy, camera_label), scores
