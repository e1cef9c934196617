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

Identity-disjoint cross-validation (``identity_folds``, ``cross_validate``): identities, not
comparisons, are dealt into folds. For each fold the threshold is chosen on comparisons whose two
sides both belong to the other folds, and errors are counted on comparisons whose two sides both
belong to the held-out fold (comparisons across the split are used by neither), then pooled, so
no person seen while choosing a threshold is counted against it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from verification.evaluation.metrics import (
    Scores,
    clopper_pearson_upper,
    fnmr_at_fmr,
    threshold_at_fmr_upper,
)

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


# ---- identity-disjoint cross-validation -------------------------------------------------------

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
FoldScores = Callable[[BoolArray], Scores]
"""Scores of every comparison for one fold, given that fold's calibration mask (e.g. fusion
normalised on calibration impostors only); a plain array is the same for every fold."""


def identity_folds(
    identities: Sequence[str],
    folds: int = 5,
    seed: int = 0,
    strata: Mapping[str, str] | None = None,
) -> dict[str, int]:
    """Identity → fold in ``0 … folds−1``, the same for the same inputs and ``seed``.

    Identities are shuffled (sorted first, so the input order does not matter) and dealt
    round-robin within each stratum (e.g. the data source), continuing where the last stratum
    stopped, so every fold gets a share of every source and fold sizes differ by at most one.
    """
    if folds < 2:
        raise ValueError(f"need at least two folds, got {folds}")
    unique = sorted(set(identities))
    if len(unique) < folds:
        raise ValueError(f"{len(unique)} identities cannot fill {folds} folds")
    groups: dict[str, list[str]] = {}
    for name in unique:
        groups.setdefault(strata.get(name, "") if strata else "", []).append(name)
    rng = np.random.default_rng(seed)
    out: dict[str, int] = {}
    dealt = 0
    for stratum in sorted(groups):
        members = groups[stratum]
        for position in rng.permutation(len(members)):
            out[members[int(position)]] = dealt % folds
            dealt += 1
    return out


def split_masks(
    probe_fold: IntArray, reference_fold: IntArray, fold: int
) -> tuple[BoolArray, BoolArray]:
    """(calibration, test) comparisons of ``fold``: both sides out of it, both sides in it."""
    calibration = (probe_fold != fold) & (reference_fold != fold)
    test = (probe_fold == fold) & (reference_fold == fold)
    return calibration, test


@dataclass(frozen=True, slots=True)
class CrossValidated:
    """Errors on held-out folds at thresholds chosen on the other folds, pooled over folds."""

    target_fmr: float
    confidence: float
    thresholds: tuple[float, ...]
    calibration_impostors: tuple[int, ...]
    calibration_bounds: tuple[float, ...]
    genuine: BoolArray
    tested: BoolArray
    error: BoolArray  # per comparison: false match (impostor) or false non-match (genuine)

    def _count(self, genuine: bool) -> tuple[int, int]:
        mask = self.tested & (self.genuine == genuine)
        return int(np.count_nonzero(self.error & mask)), int(np.count_nonzero(mask))

    @property
    def false_matches(self) -> tuple[int, int]:
        """(false matches, held-out impostor comparisons)."""
        return self._count(False)

    @property
    def false_non_matches(self) -> tuple[int, int]:
        """(false non-matches, held-out genuine comparisons)."""
        return self._count(True)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form: every rate beside its counts and upper bound."""
        fm, imp = self.false_matches
        fnm, gen = self.false_non_matches
        return {
            "fnmr": fnm / gen if gen else None,
            "false_non_matches": fnm,
            "genuine": gen,
            "fnmr_upper": clopper_pearson_upper(fnm, gen, self.confidence) if gen else None,
            "fmr": fm / imp if imp else None,
            "false_matches": fm,
            "impostor": imp,
            "fmr_upper": clopper_pearson_upper(fm, imp, self.confidence) if imp else None,
            "fold_thresholds": [round(t, 5) for t in self.thresholds],
            "fold_calibration_impostors": list(self.calibration_impostors),
            "fold_calibration_fmr_upper": [round(b, 6) for b in self.calibration_bounds],
        }


def cross_validate(
    scores: Scores | FoldScores,
    genuine: BoolArray,
    probe_fold: IntArray,
    reference_fold: IntArray,
    target_fmr: float,
    confidence: float = 0.95,
) -> CrossValidated:
    """Per fold: threshold at the FMR upper bound on calibration impostors; test on held-out."""
    folds = sorted(set(np.unique(probe_fold).tolist()) | set(np.unique(reference_fold).tolist()))
    tested = np.zeros(genuine.size, dtype=bool)
    error = np.zeros(genuine.size, dtype=bool)
    thresholds, sizes, bounds = [], [], []
    for fold in folds:
        calibration, test = split_masks(probe_fold, reference_fold, fold)
        values = scores(calibration) if callable(scores) else scores
        impostor = values[calibration & ~genuine]
        threshold = threshold_at_fmr_upper(impostor, target_fmr, confidence)
        thresholds.append(threshold)
        sizes.append(int(impostor.size))
        matches = int(np.count_nonzero(impostor >= threshold))
        bounds.append(clopper_pearson_upper(matches, impostor.size, confidence))
        tested |= test
        error[test] = np.where(genuine[test], values[test] < threshold, values[test] >= threshold)
    return CrossValidated(
        target_fmr,
        confidence,
        tuple(thresholds),
        tuple(sizes),
        tuple(bounds),
        genuine,
        tested,
        error,
    )


def lookalike_margin(
    impostor: npt.ArrayLike,
    pass_threshold: float,
    note_fmr: float = 1e-4,
    confidence: float = 0.95,
) -> float:
    """How far above ``pass_threshold`` a score must be before the look-alike note is dropped.

    The band ``[pass, pass + margin)`` ends at the threshold whose FMR upper bound is
    ``note_fmr`` (10× stricter than a 0.1% pass): the scores of the most alike strangers. Without
    enough impostors to show ``note_fmr``, it ends just above the highest impostor score.
    """
    note = threshold_at_fmr_upper(impostor, note_fmr, confidence)
    return max(0.0, note - pass_threshold)
