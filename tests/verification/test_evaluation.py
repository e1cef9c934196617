"""Match metrics, score fusion and calibration output, on small hand-made score arrays."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from verification.backends.flip import combine_flip, mirror_face
from verification.evaluation.calibrate import calibrate, write_thresholds
from verification.evaluation.matching import (
    FAILED_SCORE,
    Pair,
    identity_fold,
    pair_scores,
)
from verification.evaluation.metrics import (
    ZNorm,
    apcer_per_type,
    best_accuracy,
    bpcer,
    cross_fitted_fusion,
    equal_error_rate,
    error_curve,
    fit_fusion,
    fit_znorm,
    fnmr_at_fmr,
    operating_point,
    threshold_at_fmr,
)
from verification.types import Box, Face

GENUINE = [0.9, 0.8, 0.7, 0.4]
IMPOSTOR = [0.1, 0.2, 0.3, 0.5, 0.6]


def test_operating_point_counts_matches_at_or_above_the_threshold() -> None:
    point = operating_point(GENUINE, IMPOSTOR, 0.5)
    assert (point.false_matches, point.false_non_matches) == (2, 1)
    assert point.fmr == pytest.approx(0.4)
    assert point.fnmr == pytest.approx(0.25)


def test_threshold_at_fmr_allows_floor_of_target_times_impostors() -> None:
    # 5 impostors, target 20% → one may match: the threshold sits just above 0.5.
    threshold = threshold_at_fmr(IMPOSTOR, 0.2)
    assert 0.5 < threshold < 0.5 + 1e-12
    point = fnmr_at_fmr(GENUINE, IMPOSTOR, 0.2)
    assert (point.fmr, point.fnmr) == (0.2, 0.25)
    # 19.9% → none may match: just above the highest impostor.
    strict = fnmr_at_fmr(GENUINE, IMPOSTOR, 0.199)
    assert (strict.false_matches, strict.fnmr) == (0, 0.25)
    assert fnmr_at_fmr(GENUINE, IMPOSTOR, 1.0).fmr == 1.0


def test_threshold_needs_valid_input() -> None:
    with pytest.raises(ValueError, match="target FMR"):
        threshold_at_fmr(IMPOSTOR, 1.5)
    with pytest.raises(ValueError, match="empty"):
        threshold_at_fmr([], 0.1)
    with pytest.raises(ValueError, match="NaN"):
        threshold_at_fmr([0.1, math.nan], 0.1)


def test_error_curve_eer_and_accuracy_exact() -> None:
    curve = error_curve(GENUINE, IMPOSTOR)
    assert curve.fmr.tolist() == pytest.approx([0, 0, 0, 0, 0.2, 0.4, 0.4, 0.6, 0.8, 1])
    assert curve.fnmr.tolist() == pytest.approx([1, 0.75, 0.5, 0.25, 0.25, 0.25, 0, 0, 0, 0])
    assert curve.tmr[-1] == 1.0
    assert equal_error_rate(GENUINE, IMPOSTOR) == pytest.approx((0.225, 0.6))
    assert best_accuracy(GENUINE, IMPOSTOR) == pytest.approx((8 / 9, 0.7))


def test_apcer_per_type_and_bpcer_with_counts() -> None:
    apcer = apcer_per_type([("photo", False), ("photo", True), ("replay", False)])
    assert {k: (v.errors, v.attempts) for k, v in apcer.items()} == {
        "photo": (1, 2),
        "replay": (0, 1),
    }
    assert apcer["photo"].rate == 0.5
    rate = bpcer([True, False, True, True])
    assert (rate.errors, rate.attempts, rate.rate) == (1, 4, 0.25)
    assert bpcer([]).as_dict() == {"rate": None, "errors": 0, "attempts": 0}


def test_znorm_uses_calibration_impostors() -> None:
    norm = fit_znorm([1.0, 3.0])
    assert (norm.mean, norm.std) == pytest.approx((2.0, math.sqrt(2)))
    assert norm.apply([4.0]).tolist() == pytest.approx([math.sqrt(2)])
    with pytest.raises(ValueError):
        ZNorm(0.0, 0.0)
    fusion = fit_fusion({"a": [1.0, 3.0], "b": [0.0, 10.0]}, {"a": 1.0, "b": 2.0})
    fused = fusion.apply({"a": [2.0], "b": [5.0 + 10 / math.sqrt(2)]})
    assert fused.tolist() == pytest.approx([2.0])


def test_cross_fitted_fusion_never_uses_a_folds_own_scores() -> None:
    genuine = np.array([True, False, False, True, False, False])
    fold = np.array([0, 0, 0, 1, 1, 1])
    scores = {"a": np.array([5.0, 1.0, 3.0, 9.0, 2.0, 4.0])}
    fused = cross_fitted_fusion(scores, genuine, fold)
    # fold 0 scored with fold 1's impostors (2, 4): mean 3, std √2; fold 1 with (1, 3): mean 2.
    assert fused.tolist() == pytest.approx(
        [2 / math.sqrt(2), -2 / math.sqrt(2), 0.0, 7 / math.sqrt(2), 0.0, 2 / math.sqrt(2)]
    )
    changed = {"a": scores["a"].copy()}
    changed["a"][1:3] = [100.0, 300.0]  # fold 0's own impostors do not move fold 0's scores
    assert cross_fitted_fusion(changed, genuine, fold)[0] == pytest.approx(fused[0])


def test_identity_fold_is_stable_and_per_identity() -> None:
    pairs = [
        Pair("lfw/Ann/Ann_1.jpg", "lfw/Ann/Ann_2.jpg", True),
        Pair("lfw/Ann/Ann_1.jpg", "lfw/Bob/Bob_1.jpg", False),
        Pair("lfw/Bob/Bob_1.jpg", "lfw/Bob/Bob_2.jpg", True),
    ]
    folds = identity_fold(pairs)
    assert folds[0] == folds[1]
    assert identity_fold(pairs).tolist() == folds.tolist()


def test_pair_scores_mark_failures_to_acquire_as_non_matches() -> None:
    pairs = [Pair("a", "b", True), Pair("a", "c", False)]
    vectors = {"a": np.ones(2, np.float32), "b": np.ones(2, np.float32), "c": None}
    scores = pair_scores(pairs, vectors, lambda u, v: float(u @ v))
    assert scores.tolist() == [2.0, FAILED_SCORE]


def test_mirror_face_swaps_sides_and_keeps_the_box() -> None:
    points = np.array([[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]], np.float32)
    face = Face(Box(20, 20, 60, 80), points)
    mirrored = mirror_face(face, 100)
    assert (mirrored.box.x, mirrored.box.w) == (20, 60)
    assert mirrored.landmarks5[0].tolist() == [29, 40]  # the eye now on the image's left
    assert mirrored.landmarks5[3].tolist() == [34, 80]
    unit = combine_flip(np.array([1, 0], np.float32), np.array([0, 1], np.float32))
    assert float(np.linalg.norm(unit)) == pytest.approx(1.0)


def test_calibration_writes_thresholds_per_model_key(tmp_path: Path) -> None:
    path = tmp_path / "policy" / "thresholds.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"policy_version": "7", "thresholds": {"old/m@1": {"t": 1}}}))
    entries = calibrate({"dlib/m@1": (GENUINE, IMPOSTOR)}, 0.2)
    document = write_thresholds(path, entries, 0.2, "pairs.csv")
    stored = json.loads(path.read_text())
    assert stored == document
    assert stored["policy_version"] == "7"
    assert set(stored["thresholds"]) == {"old/m@1", "dlib/m@1"}
    assert stored["thresholds"]["dlib/m@1"]["fmr"] == 0.2
    assert stored["thresholds"]["dlib/m@1"]["threshold"] == pytest.approx(0.5)
