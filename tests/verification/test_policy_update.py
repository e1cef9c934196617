"""Calibrated thresholds land in the policy the server loads."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from verification.evaluation.metrics import (
    clopper_pearson_upper,
    cluster_bootstrap,
    threshold_at_fmr_bootstrap,
    threshold_at_fmr_upper,
)
from verification.evaluation.policy_update import round_up, update_policy
from verification.policy import PolicyError, load_policy, parse_policy

POLICY = Path(__file__).resolve().parents[2] / "verification" / "policy.json"


def test_each_service_gets_thresholds_at_its_false_match_rates(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    shutil.copy(POLICY, path)
    doc = json.loads(path.read_text())
    doc["services"]["pin_change"].update(pass_fmr=0.001, refer_fmr=0.01)
    doc["services"]["consultation"].update(pass_fmr=0.01, refer_fmr=0.05)
    path.write_text(json.dumps(doc))
    impostor = np.linspace(-1.0, 0.5, 1000)  # highest impostor score 0.5
    genuine = np.linspace(0.3, 1.0, 200)
    update_policy(path, {"test/model@1": (genuine, impostor)}, "synthetic")
    policy = load_policy(path)
    strict = policy.thresholds("pin_change", "test/model@1")
    loose = policy.thresholds("consultation", "test/model@1")
    assert strict is not None and loose is not None
    # 0.1% of 1000 impostors: at most one above the pass threshold; 1% for the looser service.
    assert (impostor >= strict.accept).sum() <= 1 and (impostor >= loose.accept).sum() <= 10
    assert strict.accept > loose.accept and strict.refer <= strict.accept
    assert policy.version != json.loads(POLICY.read_text())["version"]
    # Models it was not given keep their thresholds.
    assert set(json.loads(POLICY.read_text())["models"]) <= set(
        json.loads(path.read_text())["models"]
    )


def test_thresholds_are_written_at_the_upper_bound_with_counts(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    shutil.copy(POLICY, path)
    rng = np.random.default_rng(7)
    impostor = rng.normal(0.0, 0.1, 50_000)
    genuine = rng.normal(0.6, 0.1, 500)
    written = update_policy(
        path, {"test/model@1": (genuine, impostor)}, "synthetic", version_tag="ub95-cv5"
    )
    policy = load_policy(path)
    strict = policy.thresholds("pin_change", "test/model@1")
    assert strict is not None
    matches = int((impostor >= strict.accept).sum())
    assert clopper_pearson_upper(matches, impostor.size) <= 0.001
    assert policy.version.endswith(".ub95-cv5")
    model = policy.models["test/model@1"]
    assert model.lookalike_margin > 0
    assert (
        clopper_pearson_upper(
            int((impostor >= strict.accept + model.lookalike_margin).sum()), impostor.size
        )
        <= 1e-4
    )
    counts = written["calibration"]["counts"]["test/model@1"]
    assert {row["threshold"] for row in counts} >= {strict.accept, strict.refer}
    assert all(row["impostor"] == impostor.size for row in counts)
    # Only version, models and calibration change.
    before, after = json.loads(POLICY.read_text()), json.loads(path.read_text())
    assert {k: v for k, v in before.items() if k not in ("version", "models", "calibration")} == {
        k: v for k, v in after.items() if k not in ("version", "models", "calibration")
    }


def test_round_up_never_lowers_a_threshold() -> None:
    assert round_up(0.33701) == 0.3371
    assert round_up(0.3371) == 0.3371
    assert round_up(-0.12345) == -0.1234


def _with_margin(value: object) -> dict[str, object]:
    raw: dict[str, object] = json.loads(POLICY.read_text())
    models = raw["models"]
    assert isinstance(models, dict)
    block = next(iter(models.values()))
    if value is None:
        block.pop("lookalike_margin", None)
    else:
        block["lookalike_margin"] = value
    return raw


def test_lookalike_margin_is_parsed_and_checked() -> None:
    key = next(iter(json.loads(POLICY.read_text())["models"]))
    assert parse_policy(_with_margin(0.042)).models[key].lookalike_margin == 0.042
    assert parse_policy(_with_margin(None)).models[key].lookalike_margin == 0.0  # old files
    for bad in (-0.01, "0.1", True, math.inf):
        with pytest.raises(PolicyError, match="lookalike_margin"):
            parse_policy(_with_margin(bad))


def _clustered_impostors(seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Impostor pairs of 60 identities in which two look-alike couples score high together:
    independent trials they are not."""
    rng = np.random.default_rng(seed)
    a, b = np.triu_indices(60, k=1)
    a, b = np.repeat(a, 6), np.repeat(b, 6)  # six image pairs per couple of identities
    scores = rng.normal(0.0, 0.1, a.size)
    alike = ((a == 1) & (b == 2)) | ((a == 3) & (b == 4))
    scores[alike] = rng.normal(0.42, 0.03, int(alike.sum()))
    return scores, a, b


def test_the_bootstrap_threshold_holds_the_target_when_identities_are_resampled() -> None:
    """Issue 11: the shipped thresholds met the Clopper–Pearson bound, which treats every
    comparison as independent; resampling identities, the bound at them was 0.14–0.17 %."""
    impostor, a, b = _clustered_impostors()
    plain = threshold_at_fmr_upper(impostor, 0.001)
    boot = threshold_at_fmr_bootstrap(impostor, a, b, 0.001)
    assert boot > plain
    before = cluster_bootstrap(impostor >= plain, a, b).upper_one_sided
    after = cluster_bootstrap(impostor >= boot, a, b).upper_one_sided
    assert before > 0.001 >= after, (before, after)


def test_with_identities_the_policy_is_written_at_the_stricter_bound(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    shutil.copy(POLICY, path)
    impostor, a, b = _clustered_impostors()
    genuine = np.random.default_rng(4).normal(0.7, 0.1, 400)
    scores = {"test/model@1": (genuine, impostor)}
    written = update_policy(path, scores, "synthetic", identities=(a, b))
    strict = load_policy(path).thresholds("pin_change", "test/model@1")
    assert strict is not None
    assert strict.accept >= threshold_at_fmr_bootstrap(impostor, a, b, 0.001)
    rows = {r["threshold"]: r for r in written["calibration"]["counts"]["test/model@1"]}
    assert rows[strict.accept]["bootstrap_fmr_upper"] <= 0.001
    assert "bootstrap" in written["calibration"]["rule"]
