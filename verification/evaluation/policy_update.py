"""Write calibrated match thresholds into the decision policy.

Each service in the policy names the false-match rates it accepts: ``pass_fmr`` (the score
above which the match passes) and ``refer_fmr`` (above which the advisor decides). Given
genuine/impostor scores per model key, this sets every service's ``pass`` / ``refer`` threshold
of that model, and its ``identity_min`` (at ``identity_fmr``), by the upper-bound rule: the
lowest threshold whose one-sided Clopper–Pearson upper bound of the FMR on the impostors is at
most the rate (``threshold_at_fmr_upper``) and, when the impostors' identities are given, whose
identity-level bootstrap bound is too (``threshold_at_fmr_bootstrap``: comparisons share
identities, so the first bound alone is too narrow). Thresholds are rounded *up* to four
decimals, so rounding never admits another false match. ``lookalike_margin`` is the band above
the strictest pass threshold that holds the scores of the most alike strangers
(``calibrate.lookalike_margin``).
The policy version is bumped so evidence names the thresholds it was decided with, and the
``calibration`` block records the data, the rule and the counts behind every threshold.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from verification.evaluation.calibrate import lookalike_margin, write_json_atomically
from verification.evaluation.metrics import (
    clopper_pearson_upper,
    cluster_bootstrap,
    operating_point,
    threshold_at_fmr_bootstrap,
    threshold_at_fmr_upper,
)
from verification.policy import parse_policy

DEFAULT_PASS_FMR = 0.001
DEFAULT_REFER_FMR = 0.01
DEFAULT_NOTE_FMR = 1e-4
DECIMALS = 4


def round_up(value: float, decimals: int = DECIMALS) -> float:
    """``value`` rounded towards +∞ to ``decimals`` places (a threshold never moves down)."""
    scale = 10.0**decimals
    rounded = math.ceil(value * scale) / scale
    return rounded if rounded >= value else rounded + 1.0 / scale


def _rates(document: Mapping[str, Any], identity_fmr: float) -> dict[str, float]:
    rates = {"identity": identity_fmr}
    for name, rule in document["services"].items():
        rates[f"{name}.pass"] = float(rule.get("pass_fmr", DEFAULT_PASS_FMR))
        rates[f"{name}.refer"] = float(rule.get("refer_fmr", DEFAULT_REFER_FMR))
    return rates


# The impostor pairs' identities (one array per side), for the bootstrap bound.
PairIdentities = tuple[npt.ArrayLike, npt.ArrayLike]


def _threshold(
    impostor: npt.NDArray[np.float64],
    rate: float,
    confidence: float,
    identities: PairIdentities | None,
) -> float:
    threshold = threshold_at_fmr_upper(impostor, rate, confidence)
    if identities is not None:
        a, b = identities
        boot = threshold_at_fmr_bootstrap(impostor, a, b, rate, confidence=confidence)
        threshold = max(threshold, boot)
    return round_up(threshold)


def _model_block(
    document: Mapping[str, Any],
    impostor: npt.NDArray[np.float64],
    identity_fmr: float,
    note_fmr: float,
    confidence: float,
    identities: PairIdentities | None = None,
) -> dict[str, Any]:
    at = {
        rate: _threshold(impostor, rate, confidence, identities)
        for rate in set(_rates(document, identity_fmr).values())
    }
    services: dict[str, dict[str, float]] = {}
    for name, rule in document["services"].items():
        accept = at[float(rule.get("pass_fmr", DEFAULT_PASS_FMR))]
        refer = at[float(rule.get("refer_fmr", DEFAULT_REFER_FMR))]
        services[name] = {"pass": accept, "refer": min(refer, accept)}
    strictest = max(s["pass"] for s in services.values())
    margin = lookalike_margin(impostor, strictest, note_fmr, confidence)
    return {
        "identity_min": at[identity_fmr],
        "lookalike_margin": round_up(margin),
        "services": services,
    }


def calibrated_models(
    document: Mapping[str, Any],
    scores: Mapping[str, tuple[npt.ArrayLike, npt.ArrayLike]],
    identity_fmr: float = 0.01,
    note_fmr: float = DEFAULT_NOTE_FMR,
    confidence: float = 0.95,
    identities: PairIdentities | None = None,
) -> dict[str, Any]:
    """The ``models`` block of ``document`` with thresholds from ``(genuine, impostor)`` scores
    (``identities``: of the impostor pairs, in the same order for every model).

    Other keys of a model block (``scale`` …) and models without scores are kept as they are.
    """
    models = {key: dict(value) for key, value in document.get("models", {}).items()}
    for key, (_genuine, impostor) in scores.items():
        values = np.asarray(impostor, dtype=np.float64)
        block = _model_block(document, values, identity_fmr, note_fmr, confidence, identities)
        models[key] = {**models.get(key, {}), **block}
    return models


def threshold_counts(
    models: Mapping[str, Any],
    scores: Mapping[str, tuple[npt.ArrayLike, npt.ArrayLike]],
    confidence: float = 0.95,
    identities: PairIdentities | None = None,
) -> dict[str, Any]:
    """Per model key and distinct written threshold: the errors behind it on the given scores
    (and the identity-level bootstrap bound of the FMR when ``identities`` are given)."""
    out: dict[str, Any] = {}
    for key, (genuine, impostor) in scores.items():
        block = models[key]
        thresholds = {block["identity_min"]} | {
            t for s in block["services"].values() for t in (s["pass"], s["refer"])
        }
        rows = []
        for threshold in sorted(thresholds):
            point = operating_point(genuine, impostor, threshold)
            row = {
                "threshold": threshold,
                "false_matches": point.false_matches,
                "impostor": point.impostors,
                "fmr_upper": round(
                    clopper_pearson_upper(point.false_matches, point.impostors, confidence), 7
                ),
                "false_non_matches": point.false_non_matches,
                "genuine": point.genuines,
            }
            if identities is not None:
                matched = np.asarray(impostor, dtype=np.float64) >= threshold
                bound = cluster_bootstrap(matched, *identities, confidence=confidence)
                row["bootstrap_fmr_upper"] = round(bound.upper_one_sided, 7)
            rows.append(row)
        out[key] = rows
    return out


def update_policy(
    path: Path,
    scores: Mapping[str, tuple[npt.ArrayLike, npt.ArrayLike]],
    dataset: str,
    *,
    confidence: float = 0.95,
    identity_fmr: float = 0.01,
    note_fmr: float = DEFAULT_NOTE_FMR,
    version_tag: str | None = None,
    calibration: Mapping[str, Any] | None = None,
    identities: PairIdentities | None = None,
) -> dict[str, Any]:
    """Rewrite the policy file at ``path`` (atomically) with calibrated thresholds.

    Only ``version``, ``models`` and ``calibration`` change. The version is
    ``<UTC date>.<version_tag>`` (default ``ub<confidence>-<n>m``).
    """
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    models = calibrated_models(document, scores, identity_fmr, note_fmr, confidence, identities)
    document["models"] = models
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    tag = version_tag or f"ub{round(confidence * 100)}-{len(scores)}m"
    document["version"] = f"{stamp}.{tag}"
    document["calibration"] = {
        **(calibration or {}),
        "dataset": dataset,
        "rule": (
            f"lowest threshold whose one-sided {confidence:.0%} Clopper-Pearson upper bound of "
            "the FMR on the impostor pairs is <= the service's pass_fmr / refer_fmr "
            f"(identity_min: {identity_fmr})"
            + (
                f", and at which at least {confidence:.0%} of identity-level bootstrap "
                "resamples (2000, identities drawn with replacement) meet it too"
                if identities is not None
                else ""
            )
            + f"; rounded up to {DECIMALS} decimals; "
            f"lookalike_margin: up to the threshold whose bound is {note_fmr}"
        ),
        "confidence": confidence,
        "models": sorted(scores),
        "counts": threshold_counts(models, scores, confidence, identities),
    }
    parse_policy(document)  # never write a policy the server could not load
    write_json_atomically(path, document)
    return document
