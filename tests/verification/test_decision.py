"""Decision and policy: outcomes, reasons, thresholds per service and embedder, versioning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import verification
from tests.verification import clipdata as cd
from verification.attempt import Attempt, AttemptResult, AttemptState, FrameObservation
from verification.challenges import Action, Challenge, ChallengePlan
from verification.decision import MatchInput, Outcome, decide, match_score
from verification.passive import Finding
from verification.policy import SERVICES, PolicyError, Severity, load_policy, parse_policy

POLICY_FILE = Path(verification.__file__).parent / "policy.json"
DLIB = "dlib/dlib_face_recognition_resnet_model_v1@0.3.0"
POLICY = load_policy()


def passed_attempt() -> AttemptResult:
    """A real attempt: baseline, one blink, in ANALYSING."""
    attempt = Attempt(ChallengePlan("n" * 22, (Challenge(Action.BLINK, 5.0),)))
    attempt.start(0.0)
    pts, size = cd.real_face(cd.NEUTRAL_AT)
    script = [pts] * 9 + [cd.eyes_closed(pts)] * 2 + [pts] * 2
    for i, face in enumerate(script):
        attempt.observe((i + 1) / 10, FrameObservation(*size, face))
    assert attempt.state is AttemptState.ANALYSING
    return attempt.result()


def timed_out_attempt() -> AttemptResult:
    attempt = Attempt(ChallengePlan("n" * 22, (Challenge(Action.BLINK, 5.0),)))
    attempt.start(0.0)
    attempt.tick(10.0)
    return attempt.result()


def test_packaged_policy_covers_every_service_and_is_versioned() -> None:
    assert POLICY.version
    for service in SERVICES:
        limits = POLICY.thresholds(service, DLIB)
        assert limits is not None and limits.refer <= limits.accept
    assert POLICY.thresholds("pin_change", "dlib/other@1") is None


def test_top_k_mean_ignores_weak_frames_but_not_one_lucky_frame() -> None:
    assert match_score([0.9, 0.1, 0.8, 0.7, 0.2], 3) == pytest.approx(0.8)
    assert match_score([0.9, 0.3, 0.3], 3) == pytest.approx(0.5)  # one lucky frame is diluted
    assert match_score([], 3) is None


def _around(level: float) -> tuple[float, float, float]:
    return (level + 0.01, level, level - 0.005)  # top-3 mean just above ``level``


@pytest.mark.parametrize(
    ("where", "outcome", "codes"),
    [
        ("above_pass", Outcome.PASS, ()),
        ("between", Outcome.REFER, ("match.borderline",)),
        ("below_refer", Outcome.FAIL, ("match.below_threshold",)),
    ],
)
def test_match_score_against_the_service_thresholds(
    where: str, outcome: Outcome, codes: tuple[str, ...]
) -> None:
    limits = POLICY.thresholds("pin_change", DLIB)
    assert limits is not None and limits.refer < limits.accept
    similarities = {
        # Clear of the look-alike band above the pass threshold (a note, tested on its own).
        "above_pass": _around(limits.accept + POLICY.lookalike_margin(DLIB) + 0.02),
        "between": _around((limits.accept + limits.refer) / 2),
        "below_refer": _around(limits.refer - 0.05),
    }[where]
    decision = decide("pin_change", passed_attempt(), [], MatchInput(DLIB, similarities), POLICY)
    assert decision.outcome is outcome and decision.codes == codes
    assert decision.policy_version == POLICY.version and decision.model_key == DLIB
    assert decision.match_score == pytest.approx(sum(similarities) / 3)


def test_a_pass_just_above_the_threshold_carries_a_lookalike_note() -> None:
    # Impostor pairs that pass at all sit just above the threshold (look-alike couples in the
    # calibration set): the advisor is told to look twice, the pass stands.
    limits = POLICY.thresholds("pin_change", DLIB)
    margin = POLICY.lookalike_margin(DLIB)
    assert limits is not None and margin > 0
    close = _around(limits.accept + margin / 2)
    decision = decide("pin_change", passed_attempt(), [], MatchInput(DLIB, close), POLICY)
    assert decision.outcome is Outcome.PASS and decision.codes == ("match.lookalike_risk",)


def test_services_differ() -> None:
    strict, loose = POLICY.thresholds("ukey_reset", DLIB), POLICY.thresholds("consultation", DLIB)
    assert strict is not None and loose is not None and loose.accept < strict.accept
    level = (loose.accept + strict.accept) / 2
    match = MatchInput(DLIB, (level, level, level))
    assert decide("consultation", passed_attempt(), [], match, POLICY).outcome is Outcome.PASS
    assert decide("ukey_reset", passed_attempt(), [], match, POLICY).outcome is Outcome.REFER


def test_a_failed_liveness_attempt_fails_with_its_reason() -> None:
    decision = decide("card_loss", timed_out_attempt(), [], MatchInput(DLIB, (0.9,)), POLICY)
    assert decision.outcome is Outcome.FAIL
    assert decision.codes[0] == "liveness.baseline_timeout"


def test_a_failed_liveness_attempt_is_not_also_reported_as_missing_a_match() -> None:
    decision = decide("pin_change", timed_out_attempt(), [], None, POLICY)
    assert decision.outcome is Outcome.FAIL
    assert decision.codes == ("liveness.baseline_timeout",)


@pytest.mark.parametrize(
    ("finding", "outcome"),
    [
        ("liveness.planar_motion", Outcome.FAIL),
        ("liveness.frozen", Outcome.FAIL),
        ("identity.changed", Outcome.FAIL),
        ("pad.spoof", Outcome.FAIL),
        ("pad.uncertain", Outcome.REFER),
        ("camera.virtual_hint", Outcome.PASS),  # a hint is noted, never decisive on its own
        ("identity.unchecked", Outcome.PASS),
        ("something.new", Outcome.REFER),  # unknown codes refer rather than pass silently
    ],
)
def test_passive_findings_by_severity(finding: str, outcome: Outcome) -> None:
    match = MatchInput(DLIB, (0.8, 0.8, 0.8))
    decision = decide("phone_change", passed_attempt(), [Finding(finding)], match, POLICY)
    assert decision.outcome is outcome and finding in decision.codes


def test_per_service_severity_override() -> None:
    match = MatchInput(DLIB, (0.8, 0.8, 0.8))
    finding = [Finding("pad.uncertain")]
    assert decide("ukey_reset", passed_attempt(), finding, match, POLICY).outcome is Outcome.FAIL
    assert decide("card_loss", passed_attempt(), finding, match, POLICY).outcome is Outcome.REFER
    assert POLICY.severity_of("ukey_reset", "pad.uncertain") is Severity.FAIL


def test_missing_match_or_uncalibrated_model_refers() -> None:
    attempt = passed_attempt()
    none = decide("pin_change", attempt, [], None, POLICY)
    assert none.outcome is Outcome.REFER and none.codes == ("match.missing",)
    other = decide("pin_change", attempt, [], MatchInput("dlib/x@9", (0.9,)), POLICY)
    assert other.outcome is Outcome.REFER and other.codes == ("policy.no_threshold",)


def test_outcome_maps_to_the_attempt_conclusion() -> None:
    assert Outcome.PASS.state is AttemptState.PASSED
    assert Outcome.REFER.state is AttemptState.REFERRED
    assert Outcome.FAIL.state is AttemptState.FAILED


def test_unknown_service_is_an_error() -> None:
    with pytest.raises(PolicyError, match="unknown service"):
        decide("mortgage", passed_attempt(), [], None, POLICY)


def test_bad_policy_files_are_clear_errors(tmp_path: Path) -> None:
    raw = json.loads(POLICY_FILE.read_text("utf-8"))
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{", "utf-8")
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "broken.json")
    del raw["services"]["ukey_reset"]
    with pytest.raises(PolicyError, match="ukey_reset"):
        parse_policy(raw)
    raw = json.loads(POLICY_FILE.read_text("utf-8"))
    raw["models"][DLIB]["services"]["pin_change"] = {"pass": 0.3, "refer": 0.5}
    with pytest.raises(PolicyError, match="above pass"):
        parse_policy(raw)
    raw = json.loads(POLICY_FILE.read_text("utf-8"))
    raw["severity"]["pad.spoof"] = "maybe"
    with pytest.raises(PolicyError, match="severity"):
        parse_policy(raw)


def test_policy_file_round_trip(tmp_path: Path) -> None:
    raw = json.loads(POLICY_FILE.read_text("utf-8"))
    raw["version"] = "test-2"
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(raw), "utf-8")
    policy = load_policy(path)
    decision = decide("pin_change", passed_attempt(), [], MatchInput(DLIB, (0.9,)), policy)
    assert decision.policy_version == "test-2" and decision.outcome is Outcome.PASS
