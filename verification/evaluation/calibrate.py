"""Match thresholds for a target FMR, written to a policy-thresholds JSON file.

File format (one object; other top-level keys of an existing file are kept)::

    {
      "target_fmr": 0.001,
      "dataset": "identity/lfw_subset/pairs.csv",
      "thresholds": {
        "<ModelInfo.key>": {"threshold": 0.33, "fmr": 0.001, "fnmr": 0.02,
                             "impostors": 4000, "genuines": 800, ...}
      }
    }

A threshold is chosen on impostor scores only (``threshold_at_fmr``); FNMR at it is reported so
the policy author sees the cost. Thresholds belong to one model key: a template made by another
backend or version cannot be compared with them.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy.typing as npt

from verification.evaluation.metrics import fnmr_at_fmr

logger = logging.getLogger(__name__)


def write_json_atomically(path: Path, document: Any, *, sort_keys: bool = False) -> None:
    """Replace ``path`` with ``document`` as JSON, never leaving a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, suffix=".tmp", delete=False, encoding="utf-8"
    ) as handle:
        json.dump(document, handle, indent=2, sort_keys=sort_keys, ensure_ascii=False)
        handle.write("\n")
    os.replace(handle.name, path)


def calibrate(
    scores: Mapping[str, tuple[npt.ArrayLike, npt.ArrayLike]], target_fmr: float
) -> dict[str, dict[str, float | int]]:
    """Per model key: the operating point at ``target_fmr`` from ``(genuine, impostor)`` scores."""
    return {
        key: fnmr_at_fmr(genuine, impostor, target_fmr).as_dict()
        for key, (genuine, impostor) in scores.items()
    }


def write_thresholds(
    path: Path,
    thresholds: Mapping[str, Mapping[str, Any]],
    target_fmr: float,
    dataset: str,
) -> dict[str, Any]:
    """Merge ``thresholds`` into the JSON file at ``path`` (atomically) and return its content."""
    document: dict[str, Any] = {}
    if path.is_file():
        document = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(document, dict):
            raise ValueError(f"{path} does not hold a JSON object")
    if document.get("target_fmr", target_fmr) != target_fmr:
        logger.warning(
            "%s had target FMR %s; replacing it with %s",
            path,
            document.get("target_fmr"),
            target_fmr,
        )
        document["thresholds"] = {}
    document["target_fmr"] = target_fmr
    document["dataset"] = dataset
    merged = dict(document.get("thresholds", {}))
    merged.update({key: dict(value) for key, value in thresholds.items()})
    document["thresholds"] = merged
    write_json_atomically(path, document, sort_keys=True)
    logger.info("wrote %d thresholds for FMR %s to %s", len(thresholds), target_fmr, path)
    return document
