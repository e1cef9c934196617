"""Match metrics, score fusion and calibration output, on small hand-made score arrays."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from verification.backends.flip import combine_flip, mirror_face
from verification.evaluation.calibrate import (
    calibrate,
    cross_validate,
    identity_folds,
    lookalike_margin,
    split_masks,
    write_thresholds,
)
from verification.evaluation.matching import (
    FAILED_SCORE,
    Pair,
    all_pairs,
    identity_fold,
    mean_embedding,
    multi_frame_trials,
    pair_scores,
    set_scores,
)
from verification.evaluation.metrics import (
    ZNorm,
    apcer_per_type,
    best_accuracy,
    binomial_cdf,
    bpcer,
    clopper_pearson_upper,
    cluster_bootstrap,
    cross_fitted_fusion,
    equal_error_rate,
    error_curve,
    fit_fusion,
    fit_znorm,
    fnmr_at_fmr,
    max_errors_within,
    operating_point,
    threshold_at_fmr,
    threshold_at_fmr_upper,
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


# ---- upper bounds, identity-disjoint folds, multi-frame trials --------------------------------


def _direct_binomial_cdf(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


def test_clopper_pearson_upper_matches_known_values() -> None:
    # k = 0: 1 − 0.05^(1/n) (≈ 3/n); k = n − 1: 0.95^(1/n); k = n: 1.
    assert clopper_pearson_upper(0, 100) == pytest.approx(1 - 0.05 ** (1 / 100), rel=1e-9)
    assert clopper_pearson_upper(0, 3000) == pytest.approx(0.000998, abs=1e-6)
    assert clopper_pearson_upper(9, 10) == pytest.approx(0.95**0.1, rel=1e-9)
    assert clopper_pearson_upper(10, 10) == 1.0
    # Tabulated one-sided 95% bounds (Beta(k+1, n−k) quantiles): 1/10 → 0.3942, 5/100 → 0.1023.
    assert clopper_pearson_upper(1, 10) == pytest.approx(0.39416, abs=1e-5)
    assert clopper_pearson_upper(5, 100) == pytest.approx(0.10225, abs=1e-5)
    # At the bound, seeing k or fewer errors has probability 5% (checked by direct summation).
    upper = clopper_pearson_upper(7, 50)
    assert _direct_binomial_cdf(7, 50, upper) == pytest.approx(0.05, abs=1e-9)
    assert binomial_cdf(3, 20, 0.3) == pytest.approx(_direct_binomial_cdf(3, 20, 0.3), rel=1e-12)
    with pytest.raises(ValueError):
        clopper_pearson_upper(3, 2)


def test_max_errors_within_is_the_last_count_whose_bound_meets_the_target() -> None:
    for n, target in ((100_000, 0.001), (65_000, 0.01), (30_000, 1e-4)):
        k = max_errors_within(n, target)
        assert clopper_pearson_upper(k, n) <= target < clopper_pearson_upper(k + 1, n)
    assert max_errors_within(1000, 0.001) == -1  # even 0 of 1,000 cannot show 0.1%


def test_threshold_at_upper_bound_meets_the_target_and_no_lower_one_does() -> None:
    impostor = np.random.default_rng(3).normal(0.0, 0.1, 20_000)
    threshold = threshold_at_fmr_upper(impostor, 0.001)
    matches = int((impostor >= threshold).sum())
    assert clopper_pearson_upper(matches, impostor.size) <= 0.001
    next_lower = np.sort(impostor)[::-1][matches]  # the highest impostor left out
    assert clopper_pearson_upper(int((impostor >= next_lower).sum()), impostor.size) > 0.001
    assert threshold > threshold_at_fmr(impostor, 0.001)  # stricter than the point estimate
    # Too few impostors to show the rate: just above the highest one.
    assert 0.5 < threshold_at_fmr_upper(IMPOSTOR, 0.01) < 0.6 + 1e-9


def test_identity_folds_are_deterministic_balanced_and_per_source() -> None:
    names = [f"lfw/{i}" for i in range(23)] + [f"tv/{i}" for i in range(7)]
    strata = {n: n.split("/")[0] for n in names}
    folds = identity_folds(names, 5, seed=1, strata=strata)
    assert folds == identity_folds(list(reversed(names)), 5, seed=1, strata=strata)
    assert set(folds) == set(names)
    assert sorted(np.bincount(list(folds.values())).tolist()) == [6, 6, 6, 6, 6]
    assert len({folds[n] for n in names if n.startswith("tv/")}) == 5
    with pytest.raises(ValueError):
        identity_folds(names[:3], 5)


def test_no_identity_is_on_both_sides_of_a_split() -> None:
    identity = np.repeat(np.arange(12), 3)  # 12 people × 3 images
    fold_of = np.array([i % 4 for i in range(12)])
    for trials in (all_pairs(identity), multi_frame_trials(identity, 2)):
        probe_fold = fold_of[trials.probe_identity]
        reference_fold = fold_of[trials.reference_identity]
        for fold in range(4):
            calibration, test = split_masks(probe_fold, reference_fold, fold)
            seen = set(trials.probe_identity[calibration]) | set(
                trials.reference_identity[calibration]
            )
            tested = set(trials.probe_identity[test]) | set(trials.reference_identity[test])
            assert tested and not seen & tested
            assert not (calibration & test).any()


def test_cross_validation_picks_thresholds_without_the_held_out_fold() -> None:
    rng = np.random.default_rng(0)
    identity = np.repeat(np.arange(40), 4)
    trials = all_pairs(identity)
    genuine = trials.genuine
    scores = np.where(genuine, rng.normal(0.7, 0.1, len(trials)), rng.normal(0, 0.1, len(trials)))
    fold_of = np.arange(40) % 4
    probe_fold, reference_fold = fold_of[trials.probe_identity], fold_of[trials.reference_identity]
    result = cross_validate(scores, genuine, probe_fold, reference_fold, 0.01)
    assert all(b <= 0.01 for b in result.calibration_bounds)
    _, impostors = result.false_matches
    assert impostors == int((~genuine & (probe_fold == reference_fold)).sum())
    assert result.false_non_matches[1] == int(genuine.sum())
    moved = scores.copy()
    _, test0 = split_masks(probe_fold, reference_fold, 0)
    moved[test0 & ~genuine] += 5.0  # fold 0's own impostors cannot move fold 0's threshold
    again = cross_validate(moved, genuine, probe_fold, reference_fold, 0.01)
    assert again.thresholds[0] == result.thresholds[0]
    assert again.false_matches[0] >= int((test0 & ~genuine).sum())


def test_cluster_bootstrap_resamples_identities() -> None:
    a = np.array([0, 0, 1, 1, 2, 3])
    b = np.array([1, 2, 2, 3, 3, 0])
    assert cluster_bootstrap(np.zeros(6), a, b, resamples=50).high == 0.0
    errors = np.array([1, 1, 0, 0, 0, 1.0])  # every error involves identity 0
    interval = cluster_bootstrap(errors, a, b, resamples=500, seed=2)
    assert interval == cluster_bootstrap(errors, a, b, resamples=500, seed=2)
    assert interval.low < 0.5 < interval.high and interval.upper_one_sided <= interval.high


def test_multi_frame_trials_and_set_scores() -> None:
    identity = np.array([0, 0, 0, 1, 1])
    trials = multi_frame_trials(identity, 2)
    assert trials.sets.tolist() == [[0, 1], [0, 2], [1, 2], [3, 4]]
    assert len(trials) == 4 * 3 and int(trials.genuine.sum()) == 3  # one own image left each
    assert not any(
        r in trials.sets[s] for s, r in zip(trials.probe_set, trials.reference, strict=True)
    )
    matrix = np.full((5, 5), 0.1)
    matrix[0, 2], matrix[1, 2] = 0.9, FAILED_SCORE
    first = int(np.flatnonzero((trials.probe_set == 0) & (trials.reference == 2))[0])
    assert set_scores(matrix, trials, "best")[first] == 0.9
    assert set_scores(matrix, trials, "mean")[first] == 0.9  # the failed image is skipped
    unit = mean_embedding([np.array([1, 0], np.float32), np.array([0, 1], np.float32)])
    assert float(np.linalg.norm(unit)) == pytest.approx(1.0)
    raw = mean_embedding([np.array([1.0, 0], np.float32), np.array([0.5, 0], np.float32)])
    assert raw.tolist() == [0.75, 0.0]


def test_lookalike_margin_reaches_the_stricter_threshold() -> None:
    impostor = np.random.default_rng(5).normal(0.0, 0.1, 60_000)
    accept = threshold_at_fmr_upper(impostor, 0.001)
    margin = lookalike_margin(impostor, accept)
    assert margin > 0
    assert clopper_pearson_upper(int((impostor >= accept + margin).sum()), impostor.size) <= 1e-4
    assert lookalike_margin(impostor, 10.0) == 0.0
