"""PASS / FAIL / REFER for one attempt, with machine-readable reasons and the policy version.

Match score: the mean of the ``top_k`` highest similarities between the attempt's best frames
and the reference template (``top_k`` from the policy, 3 by default). The mean of a few good
frames is steadier than the single best frame, which an impostor can win by one lucky pose, and
it still ignores blurred or turned frames that a plain mean would let drag a genuine customer
down.

Outcome: FAIL if any reason has severity *fail* for the service, else REFER if any has *refer*,
else PASS. *Note* reasons are kept for the advisor and the evidence but change nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from verification.attempt import AttemptResult, AttemptState
from verification.passive import Finding
from verification.policy import MatchThresholds, Policy, Severity


class Outcome(StrEnum):
    """The decision."""

    PASS = "pass"
    FAIL = "fail"
    REFER = "refer"

    @property
    def state(self) -> AttemptState:
        """The attempt state this outcome concludes to."""
        return _STATE[self]


_STATE = {
    Outcome.PASS: AttemptState.PASSED,
    Outcome.FAIL: AttemptState.FAILED,
    Outcome.REFER: AttemptState.REFERRED,
}


@dataclass(frozen=True, slots=True)
class MatchInput:
    """Similarities of the attempt's best frames to the customer's reference template."""

    model_key: str
    similarities: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Reason:
    """One reason with how much it weighed for this service."""

    code: str
    severity: Severity
    detail: Mapping[str, float | str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the advisor sees and the evidence stores."""

    outcome: Outcome
    reasons: tuple[Reason, ...]
    service: str
    policy_version: str
    match_score: float | None = None
    thresholds: MatchThresholds | None = None
    model_key: str | None = None

    @property
    def codes(self) -> tuple[str, ...]:
        """The reason codes, in order."""
        return tuple(r.code for r in self.reasons)


def match_score(similarities: Sequence[float], top_k: int) -> float | None:
    """Mean of the ``top_k`` highest similarities (None when there are none)."""
    if not similarities:
        return None
    best = sorted(similarities, reverse=True)[: max(1, top_k)]
    return sum(best) / len(best)


def _attempt_findings(result: AttemptResult) -> list[Finding]:
    if result.state in (AttemptState.ANALYSING, *_CONCLUDED) and result.liveness_passed:
        return []
    return [Finding(result.reason or "liveness.incomplete", {"state": result.state.value})]


_CONCLUDED = (AttemptState.PASSED, AttemptState.FAILED, AttemptState.REFERRED)


def _match_findings(
    match: MatchInput | None, service: str, policy: Policy
) -> tuple[list[Finding], float | None, MatchThresholds | None]:
    if match is None or not match.similarities:
        return [Finding("match.missing")], None, None
    limits = policy.thresholds(service, match.model_key)
    score = match_score(match.similarities, policy.top_k)
    if limits is None or score is None:
        return [Finding("policy.no_threshold", {"model": match.model_key})], score, None
    detail: dict[str, float | str] = {"score": round(score, 4), "pass": limits.accept}
    if score >= limits.accept:
        margin = policy.lookalike_margin(match.model_key)
        if score < limits.accept + margin:
            # Strangers who look alike score here: the advisor compares the faces themselves.
            return [Finding("match.lookalike_risk", {**detail, "margin": margin})], score, limits
        return [], score, limits
    code = "match.borderline" if score >= limits.refer else "match.below_threshold"
    return [Finding(code, {**detail, "refer": limits.refer})], score, limits


def decide(
    service: str,
    attempt: AttemptResult,
    passive: Sequence[Finding],
    match: MatchInput | None,
    policy: Policy,
) -> Decision:
    """The decision for ``service`` from the attempt, its passive findings and the match."""
    failed = _attempt_findings(attempt)
    matched, score, limits = _match_findings(match, service, policy)
    if failed and match is None:
        matched = []  # liveness already failed: no face was compared, say that reason alone
    details: dict[str, dict[str, float | str]] = {}
    for f in (*failed, *passive, *matched):  # one reason per code (two checks may name it)
        merged = details.setdefault(f.code, {})
        merged.update({k: v for k, v in f.detail.items() if k not in merged})
    reasons = tuple(
        Reason(code, policy.severity_of(service, code), detail) for code, detail in details.items()
    )
    severities = {r.severity for r in reasons}
    outcome = (
        Outcome.FAIL
        if Severity.FAIL in severities
        else Outcome.REFER
        if Severity.REFER in severities
        else Outcome.PASS
    )
    return Decision(
        outcome=outcome,
        reasons=reasons,
        service=service,
        policy_version=policy.version,
        match_score=score,
        thresholds=limits,
        model_key=match.model_key if match else None,
    )
