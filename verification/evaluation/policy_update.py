"""Write calibrated match thresholds into the decision policy.

Each service in the policy names the false-match rates it accepts: ``pass_fmr`` (the score
above which the match passes) and ``refer_fmr`` (above which the advisor decides). Given
genuine/impostor scores per model key, this sets every service's ``pass`` / ``refer`` threshold
of that model at those rates, measured on impostors only, and bumps the policy version so
evidence names the thresholds it was decided with.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy.typing as npt

from verification.evaluation.calibrate import write_json_atomically
from verification.evaluation.metrics import threshold_at_fmr
from verification.policy import parse_policy

DEFAULT_PASS_FMR = 0.001
DEFAULT_REFER_FMR = 0.01


def calibrated_models(
    document: Mapping[str, Any],
    scores: Mapping[str, tuple[npt.ArrayLike, npt.ArrayLike]],
    identity_fmr: float = 0.01,
) -> dict[str, Any]:
    """The ``models`` block of ``document`` with thresholds from ``(genuine, impostor)`` scores."""
    models = {key: dict(value) for key, value in document.get("models", {}).items()}
    for key, (_genuine, impostor) in scores.items():
        services: dict[str, dict[str, float]] = {}
        for name, rule in document["services"].items():
            accept = threshold_at_fmr(impostor, float(rule.get("pass_fmr", DEFAULT_PASS_FMR)))
            refer = threshold_at_fmr(impostor, float(rule.get("refer_fmr", DEFAULT_REFER_FMR)))
            services[name] = {"pass": round(accept, 4), "refer": round(min(refer, accept), 4)}
        previous = models.get(key, {})
        models[key] = {
            **previous,
            "identity_min": round(threshold_at_fmr(impostor, identity_fmr), 4),
            "services": services,
        }
    return models


def update_policy(
    path: Path,
    scores: Mapping[str, tuple[npt.ArrayLike, npt.ArrayLike]],
    dataset: str,
) -> dict[str, Any]:
    """Rewrite the policy file at ``path`` (atomically) with calibrated thresholds."""
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    document["models"] = calibrated_models(document, scores)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    document["version"] = f"{stamp}.cal-{len(scores)}m"
    document["calibration"] = {"dataset": dataset, "models": sorted(scores)}
    parse_policy(document)  # never write a policy the server could not load
    write_json_atomically(path, document)
    return document
