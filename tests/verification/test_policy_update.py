"""Calibrated thresholds land in the policy the server loads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from verification.evaluation.policy_update import update_policy
from verification.policy import load_policy

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
