"""Biometric error rates from similarity scores (ISO/IEC 19795-1 and 30107-3 terms).

A comparison is a *match* when ``score >= threshold`` (scores: higher = more alike).

* FMR(t)  = share of impostor scores ``>= t``; FNMR(t) = share of genuine scores ``< t``.
* ``threshold_at_fmr`` picks the lowest threshold whose FMR on the given impostors is at most
  the target: with ``n`` impostors at most ``floor(target·n)`` may match, so the threshold sits
  just above the next highest impostor score.
* ``threshold_at_fmr_upper`` is the stricter rule used for policy thresholds: the lowest threshold
  whose one-sided Clopper–Pearson upper confidence bound of the FMR (``clopper_pearson_upper``)
  is at most the target, so a small impostor set cannot claim a rate it cannot show.
* The bound treats comparisons as independent; they are not (one identity is in many pairs), so
  ``cluster_bootstrap`` resamples *identities* to show the wider, honest interval.
* APCER (per attack type) = share of attack presentations accepted; BPCER = share of bona fide
  presentations not accepted. Both come with the counts behind them.

Score fusion: each model's scores are z-normalised with the mean and standard deviation of the
impostor scores of a *calibration* split, then summed with weights. ``cross_fitted_fusion``
splits comparisons into two folds by a key (e.g. the identity of the first image), fits the
normaliser on one fold and applies it to the other, so no comparison is scored with parameters
fitted on itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Scores = npt.NDArray[np.float64]


def _as_scores(values: npt.ArrayLike, name: str) -> Scores:
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0:
        raise ValueError(f"{name} scores are empty")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} scores contain NaN or infinity")
    return array


@dataclass(frozen=True, slots=True)
class OperatingPoint:
    """Error rates at one threshold, with the counts behind them."""

    threshold: float
    fmr: float
    fnmr: float
    false_matches: int
    false_non_matches: int
    impostors: int
    genuines: int

    def as_dict(self) -> dict[str, float | int]:
        """JSON-friendly form."""
        return {
            "threshold": self.threshold,
            "fmr": self.fmr,
            "fnmr": self.fnmr,
            "false_matches": self.false_matches,
            "false_non_matches": self.false_non_matches,
            "impostors": self.impostors,
            "genuines": self.genuines,
        }


def operating_point(
    genuine: npt.ArrayLike, impostor: npt.ArrayLike, threshold: float
) -> OperatingPoint:
    """FMR and FNMR when ``score >= threshold`` means a match."""
    gen = _as_scores(genuine, "genuine")
    imp = _as_scores(impostor, "impostor")
    false_matches = int(np.count_nonzero(imp >= threshold))
    false_non_matches = int(np.count_nonzero(gen < threshold))
    return OperatingPoint(
        threshold=float(threshold),
        fmr=false_matches / imp.size,
        fnmr=false_non_matches / gen.size,
        false_matches=false_matches,
        false_non_matches=false_non_matches,
        impostors=int(imp.size),
        genuines=int(gen.size),
    )


def threshold_at_fmr(impostor: npt.ArrayLike, target_fmr: float) -> float:
    """The lowest threshold with FMR ≤ ``target_fmr`` on ``impostor`` (chosen on impostors only)."""
    if not 0.0 <= target_fmr <= 1.0:
        raise ValueError(f"target FMR must be in [0, 1], got {target_fmr}")
    imp = np.sort(_as_scores(impostor, "impostor"))[::-1]
    allowed = math.floor(target_fmr * imp.size + 1e-9)
    if allowed >= imp.size:
        return float(imp[-1])
    return float(np.nextafter(imp[allowed], np.inf))


def fnmr_at_fmr(
    genuine: npt.ArrayLike, impostor: npt.ArrayLike, target_fmr: float
) -> OperatingPoint:
    """The operating point at ``threshold_at_fmr(impostor, target_fmr)``."""
    return operating_point(genuine, impostor, threshold_at_fmr(impostor, target_fmr))


# ---- confidence bounds --------------------------------------------------------------------------


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X ≤ k) for X ~ Binomial(n, p), summed in log space (exact enough for n in the millions)."""
    if n < 0 or not 0.0 <= p <= 1.0:
        raise ValueError(f"invalid binomial n={n} p={p}")
    if k < 0:
        return 0.0
    if k >= n or p == 0.0:
        return 1.0
    if p == 1.0:
        return 0.0
    i = np.arange(1, k + 1, dtype=np.float64)
    # log pmf(i) = log pmf(i-1) + log((n-i+1)/i) + log(p/(1-p)), pmf(0) = (1-p)^n
    steps = np.log((n - i + 1) / i) + math.log(p) - math.log1p(-p)
    log_pmf = n * math.log1p(-p) + np.concatenate([[0.0], np.cumsum(steps)])
    peak = float(log_pmf.max())
    return float(min(1.0, math.exp(peak) * float(np.sum(np.exp(log_pmf - peak)))))


def clopper_pearson_upper(k: int, n: int, confidence: float = 0.95) -> float:
    """One-sided Clopper–Pearson upper bound of a rate with ``k`` errors in ``n`` trials.

    The ``confidence`` quantile of Beta(k + 1, n − k): the rate ``p`` at which seeing ``k`` or
    fewer errors has probability ``1 − confidence``, found by bisection on the binomial CDF.
    ``k = 0`` gives ``1 − (1 − confidence)^(1/n)`` (≈ 3/n, the "rule of three").
    """
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 ≤ k ≤ n and n > 0, got k={k} n={n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if k == n:
        return 1.0
    alpha = 1.0 - confidence
    low, high = k / n, 1.0
    for _ in range(200):
        middle = (low + high) / 2
        if binomial_cdf(k, n, middle) > alpha:
            low = middle
        else:
            high = middle
        if high - low <= 1e-15 + 1e-12 * high:
            break
    return high


def max_errors_within(n: int, target: float, confidence: float = 0.95) -> int:
    """The most errors in ``n`` trials whose upper bound is still ≤ ``target`` (−1: none).

    ``clopper_pearson_upper(k, n) ≤ target`` exactly when ``P(X ≤ k | n, target) ≤ 1 − confidence``
    (the binomial CDF falls as the rate grows), so the count is found without a quantile.
    """
    if n <= 0:
        raise ValueError(f"need trials, got n={n}")
    if target >= 1.0:
        return n
    alpha = 1.0 - confidence
    low, high = -1, n  # invariant: cdf(low) ≤ alpha (low = −1 trivially), cdf(high) > alpha
    while high - low > 1:
        middle = (low + high) // 2
        if binomial_cdf(middle, n, target) <= alpha:
            low = middle
        else:
            high = middle
    return low


def threshold_at_fmr_upper(
    impostor: npt.ArrayLike, target_fmr: float, confidence: float = 0.95
) -> float:
    """The lowest threshold whose FMR upper bound on ``impostor`` is ≤ ``target_fmr``.

    With ``n`` impostors at most ``max_errors_within(n, target_fmr)`` may match. When even no
    match cannot show the target (``n`` too small: fewer than ≈ 3 / target), the threshold sits
    just above the highest impostor score and its bound stays above the target: callers report
    that (``clopper_pearson_upper`` at the chosen threshold).
    """
    if not 0.0 < target_fmr <= 1.0:
        raise ValueError(f"target FMR must be in (0, 1], got {target_fmr}")
    imp = np.sort(_as_scores(impostor, "impostor"))[::-1]
    allowed = max(0, max_errors_within(imp.size, target_fmr, confidence))
    if allowed >= imp.size:
        return float(imp[-1])
    return float(np.nextafter(imp[allowed], np.inf))


def bootstrap_weights(identities: int, resamples: int, seed: int = 0) -> npt.NDArray[np.float64]:
    """How often each identity is drawn in each resample (``resamples`` × ``identities``)."""
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(identities, np.full(identities, 1.0 / identities), size=resamples)
    return draws.astype(np.float64)


def threshold_at_fmr_bootstrap(
    impostor: npt.ArrayLike,
    identity_a: npt.ArrayLike,
    identity_b: npt.ArrayLike,
    target_fmr: float,
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> float:
    """The lowest threshold at which the FMR of at least ``confidence`` of the identity-level
    resamples (as :func:`cluster_bootstrap` draws them) is ≤ ``target_fmr``.

    Comparisons share identities, so the Clopper–Pearson bound (independent trials) is too
    narrow; here whole identities are resampled. The FMR of one resample falls as the threshold
    rises, so "the resample meets the target at ``t``" is "its own lowest such threshold is ≤
    ``t``": the answer is the ``confidence`` quantile of the resamples' thresholds (taken from
    above).
    """
    if not 0.0 < target_fmr <= 1.0:
        raise ValueError(f"target FMR must be in (0, 1], got {target_fmr}")
    scores = _as_scores(impostor, "impostor")
    a, b = np.asarray(identity_a).ravel(), np.asarray(identity_b).ravel()
    if not scores.size == a.size == b.size:
        raise ValueError("impostor scores and identities must be equally long")
    labels, index = np.unique(np.concatenate([a, b]), return_inverse=True)
    order = np.argsort(scores)[::-1]
    ordered = scores[order]
    ia, ib = index[: a.size][order], index[a.size :][order]
    weights = bootstrap_weights(labels.size, resamples, seed)
    chosen = np.empty(resamples)
    for start in range(0, resamples, 64):  # 64 resamples × every pair at a time
        w = weights[start : start + 64]
        mass = np.cumsum(w[:, ia] * w[:, ib], axis=1)
        for row, cumulative in enumerate(mass):
            allowed = target_fmr * cumulative[-1]
            above = int(np.searchsorted(cumulative, allowed, side="right"))
            chosen[start + row] = (
                float(np.nextafter(ordered[above], np.inf)) if above < ordered.size else ordered[-1]
            )
    return float(np.quantile(chosen, confidence, method="higher"))


@dataclass(frozen=True, slots=True)
class Interval:
    """A percentile interval of a rate from resampled identities."""

    low: float
    high: float
    upper_one_sided: float
    resamples: int


def cluster_bootstrap(
    errors: npt.ArrayLike,
    identity_a: npt.ArrayLike,
    identity_b: npt.ArrayLike,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Interval of ``mean(errors)`` when whole identities, not comparisons, are resampled.

    Each resample draws identities with replacement; a comparison between identities ``i ≠ j``
    counts ``w_i · w_j`` times (``w`` = how often each was drawn), one within identity ``i``
    (genuine) ``w_i`` times. Gives the two-sided ``confidence`` interval and the one-sided upper
    ``confidence`` percentile.
    """
    err = np.asarray(errors, dtype=np.float64).ravel()
    a = np.asarray(identity_a).ravel()
    b = np.asarray(identity_b).ravel()
    if not err.size == a.size == b.size or err.size == 0:
        raise ValueError("errors and identities must be non-empty and equally long")
    labels, index = np.unique(np.concatenate([a, b]), return_inverse=True)
    ia, ib = index[: a.size], index[a.size :]
    m = labels.size
    counts, wrong = np.zeros((m, m)), np.zeros((m, m))
    np.add.at(counts, (ia, ib), 0.5)
    np.add.at(counts, (ib, ia), 0.5)
    np.add.at(wrong, (ia, ib), err / 2)
    np.add.at(wrong, (ib, ia), err / 2)
    diag_counts, diag_wrong = np.diag(counts).copy(), np.diag(wrong).copy()
    np.fill_diagonal(counts, 0.0)
    np.fill_diagonal(wrong, 0.0)
    w = bootstrap_weights(m, resamples, seed)
    # off-diagonal cells hold half of each pair in both directions, so wᵀCw counts a pair once
    numerator = np.einsum("ri,ij,rj->r", w, wrong, w) + w @ diag_wrong
    denominator = np.einsum("ri,ij,rj->r", w, counts, w) + w @ diag_counts
    rates = numerator[denominator > 0] / denominator[denominator > 0]
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(rates, [tail, 1.0 - tail])
    return Interval(float(low), float(high), float(np.quantile(rates, confidence)), resamples)


@dataclass(frozen=True, slots=True)
class Curve:
    """FMR and FNMR at every distinct score used as a threshold (descending thresholds)."""

    thresholds: Scores
    fmr: Scores
    fnmr: Scores

    @property
    def tmr(self) -> Scores:
        """True match rate (1 − FNMR), the ROC's y axis."""
        return 1.0 - self.fnmr


def error_curve(genuine: npt.ArrayLike, impostor: npt.ArrayLike) -> Curve:
    """ROC / DET points: every distinct score as a threshold, plus one above the highest."""
    gen = np.sort(_as_scores(genuine, "genuine"))
    imp = np.sort(_as_scores(impostor, "impostor"))
    distinct = np.unique(np.concatenate([gen, imp]))[::-1]
    thresholds = np.concatenate([[np.nextafter(distinct[0], np.inf)], distinct])
    # matches at t = count of scores >= t = n - (count of scores < t)
    fmr = (imp.size - np.searchsorted(imp, thresholds, side="left")) / imp.size
    fnmr = np.searchsorted(gen, thresholds, side="left") / gen.size
    return Curve(thresholds=thresholds, fmr=fmr.astype(np.float64), fnmr=fnmr.astype(np.float64))


def equal_error_rate(genuine: npt.ArrayLike, impostor: npt.ArrayLike) -> tuple[float, float]:
    """(EER, threshold): at the threshold where |FMR − FNMR| is smallest, their mean."""
    curve = error_curve(genuine, impostor)
    index = int(np.argmin(np.abs(curve.fmr - curve.fnmr)))
    return float((curve.fmr[index] + curve.fnmr[index]) / 2), float(curve.thresholds[index])


def best_accuracy(genuine: npt.ArrayLike, impostor: npt.ArrayLike) -> tuple[float, float]:
    """(accuracy, threshold): the best share of all comparisons decided right, over thresholds.

    Chosen on the same scores it is measured on (as LFW's "best accuracy"): optimistic.
    """
    curve = error_curve(genuine, impostor)
    n_gen = np.asarray(genuine).size
    n_imp = np.asarray(impostor).size
    correct = (1.0 - curve.fnmr) * n_gen + (1.0 - curve.fmr) * n_imp
    index = int(np.argmax(correct))
    return float(correct[index] / (n_gen + n_imp)), float(curve.thresholds[index])


@dataclass(frozen=True, slots=True)
class ErrorRate:
    """A proportion with the counts behind it."""

    errors: int
    attempts: int

    @property
    def rate(self) -> float:
        """errors / attempts (NaN when there were no attempts)."""
        return self.errors / self.attempts if self.attempts else math.nan

    def as_dict(self) -> dict[str, float | int | None]:
        """JSON-friendly form (``rate`` is null without attempts)."""
        rate = self.rate
        return {
            "rate": None if math.isnan(rate) else rate,
            "errors": self.errors,
            "attempts": self.attempts,
        }


def apcer_per_type(outcomes: Sequence[tuple[str, bool]]) -> dict[str, ErrorRate]:
    """APCER per attack type from ``(attack_type, accepted)`` pairs; errors = accepted attacks."""
    errors: dict[str, int] = {}
    attempts: dict[str, int] = {}
    for attack_type, accepted in outcomes:
        attempts[attack_type] = attempts.get(attack_type, 0) + 1
        errors[attack_type] = errors.get(attack_type, 0) + int(accepted)
    return {kind: ErrorRate(errors[kind], attempts[kind]) for kind in sorted(attempts)}


def bpcer(accepted: Sequence[bool]) -> ErrorRate:
    """BPCER from bona fide outcomes; errors = bona fide presentations not accepted."""
    return ErrorRate(sum(1 for ok in accepted if not ok), len(accepted))


# ---- score fusion -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ZNorm:
    """z-normalisation of one model's scores: ``(s - mean) / std`` of calibration impostors."""

    mean: float
    std: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mean) and math.isfinite(self.std)) or self.std <= 0:
            raise ValueError(f"invalid z-norm parameters mean={self.mean} std={self.std}")

    def apply(self, scores: npt.ArrayLike) -> Scores:
        """Normalised scores."""
        return (np.asarray(scores, dtype=np.float64) - self.mean) / self.std


def fit_znorm(calibration_impostor: npt.ArrayLike) -> ZNorm:
    """Fit on impostor scores of the calibration split only (never on test data)."""
    imp = _as_scores(calibration_impostor, "calibration impostor")
    if imp.size < 2:
        raise ValueError("need at least two calibration impostor scores")
    return ZNorm(mean=float(np.mean(imp)), std=float(np.std(imp, ddof=1)))


@dataclass(frozen=True, slots=True)
class Fusion:
    """Weighted sum of z-normalised scores, one normaliser per model key."""

    norms: Mapping[str, ZNorm]
    weights: Mapping[str, float]

    def __post_init__(self) -> None:
        if not self.norms or set(self.norms) != set(self.weights):
            raise ValueError("fusion needs the same non-empty set of models in norms and weights")

    def apply(self, scores: Mapping[str, npt.ArrayLike]) -> Scores:
        """Fused scores; ``scores`` maps each model key to equally long arrays."""
        missing = set(self.norms) - set(scores)
        if missing:
            raise ValueError(f"scores missing for {sorted(missing)}")
        parts = [self.weights[key] * self.norms[key].apply(scores[key]) for key in self.norms]
        return np.asarray(np.sum(parts, axis=0), dtype=np.float64)


def fit_fusion(
    calibration_impostor: Mapping[str, npt.ArrayLike],
    weights: Mapping[str, float] | None = None,
) -> Fusion:
    """z-norm each model on calibration impostors; equal weights unless given."""
    norms = {key: fit_znorm(values) for key, values in calibration_impostor.items()}
    chosen = dict(weights) if weights is not None else {key: 1.0 for key in norms}
    return Fusion(norms=norms, weights=chosen)


def cross_fitted_fusion(
    scores: Mapping[str, npt.ArrayLike],
    genuine: npt.ArrayLike,
    fold: npt.ArrayLike,
    weights: Mapping[str, float] | None = None,
) -> Scores:
    """Fused scores for every comparison, each fused with parameters fitted on the *other* fold.

    ``scores`` maps model key → score per comparison, ``genuine`` marks genuine comparisons,
    ``fold`` holds 0 or 1 per comparison (split by identity, see the module docstring).
    """
    is_genuine = np.asarray(genuine, dtype=bool)
    folds = np.asarray(fold)
    if set(np.unique(folds).tolist()) != {0, 1}:
        raise ValueError("fold must contain both 0 and 1")
    arrays = {key: np.asarray(values, dtype=np.float64) for key, values in scores.items()}
    fused = np.empty(is_genuine.size, dtype=np.float64)
    for test_fold in (0, 1):
        calib = (folds != test_fold) & ~is_genuine
        fusion = fit_fusion({key: values[calib] for key, values in arrays.items()}, weights)
        test = folds == test_fold
        fused[test] = fusion.apply({key: values[test] for key, values in arrays.items()})
    return fused
