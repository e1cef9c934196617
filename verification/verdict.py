"""The decision step after the last challenge, shared by the server and the attempt simulator.

Every frame the attempt bound to the identity (:mod:`verification.binding`: the frame that met
each challenge, the best frame of each challenge's window, one random frame of the baseline and
of every pause and window) is embedded and compared:

* the **match** is the mean of the ``top_k`` highest similarities of the *challenge* frames (met
  and best) to the reference template: the faces that proved liveness are the faces matched;
* the **identity check** holds every bound frame — pauses and baseline included — against the
  reference (at least the service's refer threshold) and against the attempt's *anchor* (the
  challenge frame most like the reference, at least the model's ``identity_min``): a photo of
  the customer held in the pauses while somebody else answers the challenges, or a face that
  changes anywhere, fails as ``identity.changed``;
* a bound frame that cannot be checked at embedding time (a second face, no face) is named by
  ``identity.unchecked``; when it is a challenge frame the challenge does not count.

Two halves, so that the engine-bound part runs in a worker process and the rest stays pure:
:func:`embed_bound` (needs a :class:`~verification.engine.FaceEngine`; the server calls it for
each bound frame as soon as it is final, while the customer does the next challenge) and
:func:`judge` (pure: passive checks, PAD, :func:`verification.decision.decide`). An attempt that
did not reach ``ANALYSING`` is decided on its reason alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from verification import passive
from verification.attempt import AttemptResult, AttemptState
from verification.binding import BoundFrame, Role
from verification.decision import Decision, MatchInput, decide
from verification.engine import FaceEngine, FrameAnalysis, Template, iou
from verification.policy import Policy
from verification.quality import QualityIssue
from verification.types import Face, Image, Vector

# Quality issues that do not stop a frame being compared with the reference: a turned head is
# what a turn challenge asks for (the embedders are measured on it, bench/eval_liveness.py).
_CHECKABLE_DESPITE = frozenset({QualityIssue.FACE_THE_CAMERA})
_CHALLENGE_ROLES = frozenset({Role.MET, Role.BEST})


def checkable(analysis: FrameAnalysis) -> bool:
    """The frame's face can be compared with the reference: measured (landmarks), alone, big,
    sharp, lit and in the frame (a turned head is fine)."""
    face = analysis.face
    if face is None or face.landmarks68 is None:
        return False
    return set(analysis.issues) <= _CHECKABLE_DESPITE


def candidate_score(analysis: FrameAnalysis) -> float:
    """Big, sharp faces make the best evidence and the best match (-1: not checkable)."""
    face = analysis.face
    if face is None or not checkable(analysis):
        return -1.0
    sharpness = float(analysis.quality.measures.get("sharpness", 1.0))
    return face.box.w * face.box.h * min(sharpness, 100.0)


@dataclass(frozen=True, slots=True)
class BoundScore:
    """One bound frame after embedding: its vector, or None when it could not be checked."""

    frame: BoundFrame
    vector: Vector | None = field(default=None, repr=False)
    pad: float | None = None
    why_unchecked: str = ""  # "multiple_faces", "no_face"


def embed_bound(
    engine: FaceEngine, bound: BoundFrame, image: Image, face: Face, *, pad: bool = True
) -> BoundScore:
    """Check that ``face`` is the only face of ``image`` (a full detection: tracked frames
    look only near the tracked face), then embed it (and PAD-score it when ``pad``)."""
    faces = engine.detect(image, max_width=0)
    mine = max(faces, key=lambda f: iou(f.box, face.box), default=None)
    if mine is None or iou(mine.box, face.box) < 0.3:
        return BoundScore(bound, why_unchecked="no_face")
    ratio = engine.config.quality.other_face_ratio
    if any(f is not mine and f.box.w >= ratio * mine.box.w for f in faces):
        return BoundScore(bound, why_unchecked="multiple_faces")
    vector = engine.embed(image, face)
    live = engine.live_score(image, face) if pad else None
    return BoundScore(bound, vector, live)


@dataclass(frozen=True, slots=True)
class FrameScores:
    """What the engine said about the bound frames (empty: nothing was embedded).

    ``similarities``: the challenge frames against the reference (the match); ``identity``:
    every checked bound frame against the anchor; ``reference``: every checked bound frame
    against the reference; ``unchecked``: the bound frames that could not be checked."""

    model_key: str
    similarities: tuple[float, ...] = ()
    identity: tuple[float, ...] = ()
    reference: tuple[float, ...] = ()
    unchecked: tuple[BoundScore, ...] = ()
    pad: tuple[float, ...] = ()
    best: BoundFrame | None = None  # the challenge frame most like the reference (evidence)
    per_frame: tuple[tuple[BoundFrame, float], ...] = ()  # (frame, similarity to reference)


def frame_scores(
    engine: FaceEngine, template: Template, scored: Sequence[BoundScore]
) -> FrameScores:
    """Similarities of the embedded bound frames to the reference and to the anchor."""
    checked = [(s.frame, s.vector) for s in scored if s.vector is not None]
    to_reference = [(frame, engine.compare(template, vector)) for frame, vector in checked]
    challenge = [(f, sim) for f, sim in to_reference if f.role in _CHALLENGE_ROLES]
    pads = tuple(s.pad for s in scored if s.pad is not None)
    unchecked = tuple(s for s in scored if s.vector is None)
    if not challenge:
        return FrameScores(template.model_key, unchecked=unchecked, pad=pads)
    anchor_frame = max(challenge, key=lambda item: item[1])[0]
    anchor = next(v for f, v in checked if f == anchor_frame)
    identity = tuple(engine.embedder.similarity(anchor, v) for f, v in checked if f != anchor_frame)
    return FrameScores(
        template.model_key,
        similarities=tuple(sim for _, sim in challenge),
        identity=identity,
        reference=tuple(sim for _, sim in to_reference),
        unchecked=unchecked,
        pad=pads,
        best=anchor_frame,
        per_frame=tuple(to_reference),
    )


def _unchecked_findings(scores: FrameScores) -> list[passive.Finding]:
    if not scores.unchecked:
        return []
    challenge = [s for s in scores.unchecked if s.frame.role in _CHALLENGE_ROLES]
    detail: dict[str, float | str] = {
        "frames": len(scores.unchecked),
        "challenge_frames": len(challenge),
        "why": ",".join(sorted({s.why_unchecked for s in scores.unchecked})),
    }
    code = "identity.unchecked_challenge" if challenge else "identity.unchecked"
    return [passive.Finding(code, detail)]


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
        limits = policy.thresholds(service, scores.model_key)
        floor = None if limits is None else limits.refer
        findings = [*passive.analyse(result, cfg, scores.identity, camera_label)]
        findings += passive.check_reference_floor(scores.reference, floor)
        findings += _unchecked_findings(scores)
        findings += passive.check_pad(scores.pad, cfg) if scores.pad else []
        match = MatchInput(scores.model_key, scores.similarities)
    elif result.state is AttemptState.ANALYSING and scores is not None:
        findings = _unchecked_findings(scores)  # no challenge frame could be checked
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


def score_attempt(
    engine: FaceEngine,
    template: Template,
    result: AttemptResult,
    frames: Mapping[int, tuple[Image, Face]],
) -> FrameScores:
    """Embed every bound frame of ``result`` (their images in ``frames``, by frame id) and
    score them: what the simulator does in one go and the server does frame by frame."""
    scored = [
        embed_bound(engine, bound, *frames[bound.frame])
        for bound in result.bound
        if bound.frame in frames
    ]
    return frame_scores(engine, template, scored)
