"""What an attempt's end tells the advisor, the customer and the evidence.

The advisor gets every reason with its weight and figures (the pages turn each code into a
sentence, ``verify.reason.<code>``), the score beside its thresholds, the attempts left. The
customer gets only the outcome and *advice*: one of a few plain messages
(``verify.advice.<kind>``) saying what happened and what to do next — never why a face was
not accepted (that would coach an impostor).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from cases.verify_run import RunOutcome
from signaling.messages import ReasonInfo
from verification.decision import Decision, Reason

# What the customer can do something about, by the reason that stopped the attempt.
_FACE = frozenset(
    {
        "liveness.face_lost",
        "liveness.not_neutral",
        "liveness.baseline_timeout",
        "identity.unchecked_challenge",
    }
)
_TIMING = frozenset(
    {
        "liveness.challenge_timeout",
        "liveness.wrong_action",
        "liveness.moved_before_prompt",
        "liveness.incomplete",
    }
)
# A finding about the face itself (another person, a photo, a screen): the customer is told
# only that it could not be confirmed, whatever the liveness reason next to it.
_NOT_CONFIRMED_PREFIXES = (
    "match.",
    "identity.changed",
    "pad.",
    "liveness.planar",
    "liveness.frozen",
)

_SCORED = ("match.below_threshold", "match.borderline", "match.lookalike_risk")


Wire = Literal["pass", "fail", "refer", "aborted", "undecided"]
_WIRE: dict[str, Wire] = {
    "passed": "pass",
    "failed": "fail",
    "referred": "refer",
    "aborted": "aborted",
    "undecided": "undecided",
}


def wire_outcome(state: str) -> Wire:
    """The ``verify.result`` outcome of a stored state."""
    return _WIRE[state]


def advice(state: str, decision: Decision | None) -> str:
    """The customer's message key for an attempt stored as ``state``."""
    if state == "passed":
        return "verify.advice.passed"
    if state == "referred":
        return "verify.advice.refer"
    if state == "undecided":
        return "verify.advice.busy"
    if state == "aborted":
        return "verify.advice.stopped"
    failing = _failing(decision)
    if any(code.startswith(_NOT_CONFIRMED_PREFIXES) for code in failing):
        return "verify.advice.not_confirmed"
    if failing & _FACE:
        return "verify.advice.face"
    if failing & _TIMING:
        return "verify.advice.timing"
    return "verify.advice.not_confirmed"


def _failing(decision: Decision | None) -> set[str]:
    if decision is None:
        return set()
    return {r.code for r in decision.reasons if r.severity.value == "fail"}


def _figure(reason: Reason, key: str) -> float | None:
    value = reason.detail.get(key)
    return float(value) if isinstance(value, int | float) else None


def details(decision: Decision | None, reasons: Sequence[str]) -> list[ReasonInfo]:
    """One entry per reason code, with the score and threshold it rests on when it has one."""
    if decision is None:
        return [ReasonInfo(code=code, severity="fail") for code in reasons]
    out: list[ReasonInfo] = []
    for reason in decision.reasons:
        score = threshold = None
        if reason.code in _SCORED and decision.match_score is not None:
            score = round(decision.match_score, 4)
            threshold = decision.thresholds.accept if decision.thresholds else None
        elif reason.code == "identity.changed":
            score = _figure(reason, "min_reference_similarity") or _figure(reason, "min_similarity")
            threshold = _figure(reason, "threshold")
        out.append(
            ReasonInfo(
                code=reason.code,
                severity=reason.severity.value,
                score=score,
                threshold=threshold,
            )
        )
    return out


def thresholds(decision: Decision | None) -> dict[str, float]:
    """The service's pass and refer thresholds the match was held against (may be empty)."""
    if decision is None or decision.thresholds is None:
        return {}
    return {"pass": decision.thresholds.accept, "refer": decision.thresholds.refer}


def reason_codes(outcome: RunOutcome) -> tuple[str, ...]:
    """The stored reasons: the decision's codes, or the reason the attempt ended without one."""
    if outcome.decision is not None:
        return outcome.decision.codes
    return (outcome.reason or f"attempt.{outcome.state}",)


def bound_evidence(outcome: RunOutcome) -> list[dict[str, Any]]:
    """Every bound frame for the evidence: where it was taken, why, and how it compared."""
    scores = outcome.scores
    similarity = dict(scores.per_frame) if scores else {}
    unchecked = {s.frame: s.why_unchecked for s in scores.unchecked} if scores else {}
    start = outcome.result.started_at or 0.0
    return [
        {
            "t": round(bound.t - start, 3),
            "segment": bound.segment,
            "role": bound.role.value,
            "similarity": None if bound not in similarity else round(similarity[bound], 4),
            "unchecked": unchecked.get(bound),
        }
        for bound in outcome.result.bound
    ]
