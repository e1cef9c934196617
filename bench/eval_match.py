"""Benchmark: face-match thresholds that hold on strangers (identity-disjoint CV, upper bounds).

Images: every labelled single-face image of ``identity/lfw_subset`` (80 people × 5),
``identity/face_api_js`` (8 TV characters × 5 tight crops) and ``identity/face_recognition``
(6 people, 15 photos; its ``multi/`` group photos and the seven copies of ``obama.jpg`` —
rescaled, letterboxed or cropped — are left out, since a copy would make a "genuine" pair of one
photo with itself). Every pair of images is a comparison: same identity → genuine, else impostor.
Each image is detected and embedded once per configuration ``<embedder>@<detector>``, in its
plain and mirrored view ("+flip" = the mean of both); vectors are cached in ``--cache``.

Identity-disjoint cross-validation: identities (not images or pairs) are dealt into ``--folds``
folds (seeded, within each source). Per fold, a threshold is chosen on comparisons whose both
sides are out of the fold and errors are counted on comparisons whose both sides are in it;
counts are pooled over folds (pairs across folds are in neither set).

Threshold rule: the lowest threshold whose one-sided 95% Clopper–Pearson upper bound of the FMR
on the calibration impostors is ≤ the target (not the point estimate). Comparisons share
identities, so they are not independent: the binomial bound is too narrow, and an identity-level
(cluster) bootstrap interval is reported beside it.

Reported: FNMR / FMR (with counts and upper bounds) at FMR 1% and 0.1% for every configuration
and score fusion (z-norm fitted on each fold's calibration impostors); the same on LFW alone;
multi-frame matching (k probe photos of one person against one reference photo: mean embedding,
best of k, mean of the k scores, each with its own thresholds); the FMR bound at every threshold
in the policy file before it is rewritten; the look-alike band.

Look-alike margin (``lookalike_margin`` per model): the band above the strictest pass threshold
(FMR 0.1%) up to the threshold whose FMR upper bound is 0.01% (10× stricter), i.e. the band that
holds the scores of the most alike strangers. A passing score inside it gets the "look-alike
risk" note; the same rule fitted per fold is checked on held-out identities.

``--write-policy FILE`` sets, for each model key of ``--calibrate-configs``, every service's pass
and refer thresholds at its ``pass_fmr`` / ``refer_fmr``, ``identity_min`` at FMR 1% (all by the
upper-bound rule, on all images) and the margin. Prints one JSON object. Usage::

    python bench/eval_match.py [--limit-images N] [--write-policy verification/policy.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from verification.backends.flip import combine_flip, flip_info, mirror_view
from verification.evaluation.calibrate import (
    BoolArray,
    CrossValidated,
    FoldScores,
    cross_validate,
    identity_folds,
    lookalike_margin,
    split_masks,
    write_thresholds,
)
from verification.evaluation.matching import (
    FAILED_SCORE,
    LabelledImage,
    Trials,
    all_pairs,
    central_face,
    load_labels,
    mean_embedding_scores,
    multi_frame_trials,
    read_rgb,
    set_scores,
    similarity_matrix,
)
from verification.evaluation.metrics import (
    Scores,
    clopper_pearson_upper,
    cluster_bootstrap,
    equal_error_rate,
    error_curve,
    fit_fusion,
    operating_point,
    threshold_at_fmr_upper,
)
from verification.evaluation.policy_update import update_policy
from verification.types import FaceDetector, FaceEmbedder, Image, Vector

logger = logging.getLogger("bench.eval_match")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SOURCES = ("lfw_subset", "face_api_js", "face_recognition")
COPIES = tuple(  # the same photo as face_recognition/obama/obama.jpg
    f"face_recognition/obama/{name}"
    for name in (
        "obama-240p.jpg",
        "obama-480p.jpg",
        "obama-720p.jpg",
        "obama-1080p.jpg",
        "obama_partial_face.jpg",
        "obama_partial_face2.jpg",
        "obama_small.jpg",
    )
)
YUNET = "face_detect_yunet/face_detection_yunet_2023mar.onnx"
MOBILEFACENET = "face_recog_mobilefacenet/MobileFaceNet.onnx"
TARGETS = (0.01, 0.001)
NOTE_FMR = 1e-4
CAVEAT = (
    "Comparisons are not independent (each identity and each image is in many pairs), so "
    "the Clopper-Pearson bounds, which assume independent trials, are too narrow; the "
    "identity-level bootstrap (identities resampled with replacement) is the more honest "
    "interval. Multi-frame probes are different photos of a person, less alike than frames of "
    "one video, so the multi-frame gain is likely smaller live."
)


def _key(target: float) -> str:
    return f"at_fmr_{target:.1%}".replace(".0%", "%")


# ---- embeddings -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Views:
    """Plain and mirrored embeddings of every image for one configuration."""

    embedder: FaceEmbedder
    plain: list[Vector | None]
    mirrored: list[Vector | None]

    def vectors(self, flip: bool) -> list[Vector | None]:
        """Per image: the plain vector, or the flip mean."""
        if not flip:
            return self.plain
        return [
            None if a is None or b is None else combine_flip(a, b)
            for a, b in zip(self.plain, self.mirrored, strict=True)
        ]


def _default_dir(env: str, name: str) -> Path:
    return Path(os.environ.get(env, REPO.parent / "shared" / name))


def _detectors(models: Path) -> dict[str, Callable[[], FaceDetector]]:
    from verification.backends.dlib_backend import DlibDetector
    from verification.backends.yunet import YuNetDetector

    return {
        "dlib": lambda: DlibDetector(upsample=1),
        "yunet": lambda: YuNetDetector(models / YUNET),
    }


def _embedders(models: Path) -> dict[str, Callable[[], FaceEmbedder]]:
    from verification.backends.dlib_backend import DlibEmbedder
    from verification.backends.onnx_arcface import ArcFaceEmbedder

    return {
        "dlib": DlibEmbedder,
        "mobilefacenet": lambda: ArcFaceEmbedder(models / MOBILEFACENET),
    }


def _to_array(vectors: Sequence[Vector | None], dim: int) -> npt.NDArray[np.float32]:
    out = np.full((len(vectors), dim), np.nan, dtype=np.float32)
    for i, vector in enumerate(vectors):
        if vector is not None:
            out[i] = vector
    return out


def _from_array(array: npt.NDArray[np.float32]) -> list[Vector | None]:
    return [None if np.isnan(row).any() else row.copy() for row in array]


class Embeddings:
    """Detects once per detector, embeds once per configuration, caches vectors on disk."""

    def __init__(self, args: argparse.Namespace, images: Sequence[LabelledImage]) -> None:
        self.args = args
        self.files = [image.file for image in images]
        self.faces: dict[str, list[Any]] = {}
        self.timings: dict[str, float] = {}

    def _load(self, name: str) -> Image:
        return read_rgb(self.args.data / "identity" / name)

    def _detect(self, det_name: str) -> list[Any]:
        if det_name not in self.faces:
            start = time.perf_counter()
            detector = _detectors(self.args.models)[det_name]()
            found = []
            for name in self.files:
                image = self._load(name)
                found.append(central_face(detector.detect(image), image.shape[1], image.shape[0]))
            self.faces[det_name] = found
            self.timings[f"detect:{det_name}"] = time.perf_counter() - start
        return self.faces[det_name]

    def views(self, emb_name: str, det_name: str) -> Views:
        """The configuration's vectors, from the cache when it holds these files and models."""
        embedder = _embedders(self.args.models)[emb_name]()
        digest = hashlib.sha256("\n".join([embedder.info.key, *self.files]).encode()).hexdigest()
        path = self.args.cache / f"match_{emb_name}@{det_name}_{digest[:12]}.npz"
        if self.args.cache_enabled and path.is_file():
            with np.load(path) as stored:
                return Views(embedder, _from_array(stored["plain"]), _from_array(stored["mirror"]))
        faces = self._detect(det_name)
        start = time.perf_counter()
        plain: list[Vector | None] = []
        mirrored: list[Vector | None] = []
        for name, face in zip(self.files, faces, strict=True):
            image = None if face is None else self._load(name)
            plain.append(None if image is None else embedder.embed(image, face))
            mirrored.append(None if image is None else mirror_view(embedder, image, face))
        self.timings[f"embed+mirror:{emb_name}@{det_name}"] = time.perf_counter() - start
        if self.args.cache_enabled:
            dim = next(v.size for v in plain if v is not None)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, plain=_to_array(plain, dim), mirror=_to_array(mirrored, dim))
        return Views(embedder, plain, mirrored)


# ---- scores per trial kind --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScoreSet:
    """One configuration's vectors with its similarity, and the image × image matrix."""

    vectors: list[Vector | None]
    similarity: Callable[[Vector, Vector], float]
    matrix: Scores


def _trial_scores(score_set: ScoreSet, trials: Trials, how: str) -> Scores:
    if how == "mean_embedding":
        return mean_embedding_scores(score_set.vectors, trials, score_set.similarity)
    return set_scores(score_set.matrix, trials, how)


def _fused(members: Sequence[Scores], genuine: BoolArray) -> FoldScores:
    """Fold scores of a z-norm sum fitted on the fold's calibration impostors only."""

    def for_fold(calibration: BoolArray) -> Scores:
        names = [str(i) for i in range(len(members))]
        impostor = calibration & ~genuine
        fusion = fit_fusion({n: m[impostor] for n, m in zip(names, members, strict=True)})
        return fusion.apply(dict(zip(names, members, strict=True)))

    return for_fold


@dataclass(frozen=True, slots=True)
class Setup:
    """Trials, folds and bootstrap settings shared by every evaluation."""

    identity_names: list[str]
    fold_of: npt.NDArray[np.int64]  # per identity index
    confidence: float
    resamples: int


def _bootstrap(setup: Setup, trials: Trials, result: CrossValidated, genuine: bool) -> list[float]:
    mask = result.tested & (result.genuine == genuine)
    if not mask.any():
        return []
    interval = cluster_bootstrap(
        result.error[mask],
        trials.probe_identity[mask],
        trials.reference_identity[mask],
        resamples=setup.resamples,
        confidence=setup.confidence,
    )
    return [round(interval.low, 6), round(interval.high, 6), round(interval.upper_one_sided, 6)]


def _evaluate(
    setup: Setup, trials: Trials, scores: Scores | FoldScores, mask: BoolArray | None = None
) -> dict[str, Any]:
    """CV at each target FMR (on the trials in ``mask``), with cluster-bootstrap intervals."""
    if mask is not None:
        if callable(scores):
            raise ValueError("a trial mask needs plain scores")
        scores = scores[mask]
        trials = Trials(
            trials.sets,
            trials.probe_set[mask],
            trials.reference[mask],
            trials.probe_identity[mask],
            trials.reference_identity[mask],
        )
    genuine = trials.genuine
    probe_fold = setup.fold_of[trials.probe_identity]
    reference_fold = setup.fold_of[trials.reference_identity]
    out: dict[str, Any] = {}
    for target in TARGETS:
        result = cross_validate(
            scores, genuine, probe_fold, reference_fold, target, setup.confidence
        )
        entry = result.as_dict()
        entry["bootstrap_fnmr_95"] = _bootstrap(setup, trials, result, True)
        entry["bootstrap_fmr_95"] = _bootstrap(setup, trials, result, False)
        entry["fmr_upper_meets_target"] = (entry["fmr_upper"] or 1.0) <= target
        out[_key(target)] = entry
    return out


# ---- shipped thresholds, look-alikes ----------------------------------------------------------


def _at_threshold(
    setup: Setup, trials: Trials, scores: Scores, threshold: float, target: float
) -> dict[str, Any]:
    genuine = trials.genuine
    point = operating_point(scores[genuine], scores[~genuine], threshold)
    errors = scores[~genuine] >= threshold
    interval = cluster_bootstrap(
        errors,
        trials.probe_identity[~genuine],
        trials.reference_identity[~genuine],
        resamples=setup.resamples,
        confidence=setup.confidence,
    )
    upper = clopper_pearson_upper(point.false_matches, point.impostors, setup.confidence)
    return {
        "threshold": threshold,
        "target_fmr": target,
        "fmr": point.fmr,
        "false_matches": point.false_matches,
        "impostor": point.impostors,
        "fmr_upper": upper,
        "bootstrap_fmr_upper": interval.upper_one_sided,
        "meets_target": upper <= target,
        "fnmr": point.fnmr,
        "false_non_matches": point.false_non_matches,
        "genuine": point.genuines,
    }


def _shipped(
    setup: Setup, trials: Trials, policy: Mapping[str, Any], scores: Mapping[str, Scores]
) -> dict[str, Any]:
    """FMR (bound) at every threshold the policy file held before this run."""
    out: dict[str, Any] = {"version": policy.get("version"), "models": {}}
    rules = policy["services"]
    for key, block in policy["models"].items():
        if key not in scores:
            continue
        values = scores[key]
        entry: dict[str, Any] = {
            "identity_min": _at_threshold(
                setup, trials, values, float(block["identity_min"]), 0.01
            ),
            "services": {},
        }
        for service, limits in block["services"].items():
            rule = rules.get(service, {})
            entry["services"][service] = {
                "pass": _at_threshold(
                    setup, trials, values, float(limits["pass"]), float(rule["pass_fmr"])
                ),
                "refer": _at_threshold(
                    setup, trials, values, float(limits["refer"]), float(rule["refer_fmr"])
                ),
            }
        out["models"][key] = entry
    return out


def _lookalikes(
    setup: Setup, trials: Trials, scores: Scores, pass_fmr: float, top: int = 8
) -> dict[str, Any]:
    """The look-alike band on all images, the couples in it, and the rule checked per fold."""
    genuine = trials.genuine
    impostor = scores[~genuine]
    accept = threshold_at_fmr_upper(impostor, pass_fmr, setup.confidence)
    margin = lookalike_margin(impostor, accept, NOTE_FMR, setup.confidence)
    above = np.flatnonzero(~genuine & (scores >= accept))
    couples: dict[str, list[float]] = {}
    for i in above:
        names = sorted(
            setup.identity_names[int(x)]
            for x in (trials.probe_identity[i], trials.reference_identity[i])
        )
        couples.setdefault(" ~ ".join(names), []).append(float(scores[i]))
    ranked = sorted(couples.items(), key=lambda kv: (-len(kv[1]), -max(kv[1])))[:top]
    passes = genuine & (scores >= accept)
    held_out = _margin_cv(setup, trials, scores, pass_fmr)
    return {
        "pass_threshold": accept,
        "margin": margin,
        "note_below": accept + margin,
        "impostors_passing": int(above.size),
        "impostors_passing_in_band": int(np.count_nonzero(scores[above] < accept + margin)),
        "genuine_passing": int(passes.sum()),
        "genuine_passing_in_band": int(np.count_nonzero(passes & (scores < accept + margin))),
        "top_couples": [
            {"couple": name, "pairs": len(values), "max_score": round(max(values), 4)}
            for name, values in ranked
        ],
        "held_out": held_out,
    }


def _margin_cv(setup: Setup, trials: Trials, scores: Scores, pass_fmr: float) -> dict[str, int]:
    """Margin fitted on calibration folds: held-out false matches / genuine passes it notes."""
    genuine = trials.genuine
    probe_fold = setup.fold_of[trials.probe_identity]
    reference_fold = setup.fold_of[trials.reference_identity]
    counts = dict.fromkeys(("false_matches", "noted", "genuine_passes", "genuine_noted"), 0)
    for fold in np.unique(setup.fold_of).tolist():
        calibration, test = split_masks(probe_fold, reference_fold, fold)
        impostor = scores[calibration & ~genuine]
        accept = threshold_at_fmr_upper(impostor, pass_fmr, setup.confidence)
        note = accept + lookalike_margin(impostor, accept, NOTE_FMR, setup.confidence)
        passing = test & (scores >= accept)
        counts["false_matches"] += int(np.count_nonzero(passing & ~genuine))
        counts["noted"] += int(np.count_nonzero(passing & ~genuine & (scores < note)))
        counts["genuine_passes"] += int(np.count_nonzero(passing & genuine))
        counts["genuine_noted"] += int(np.count_nonzero(passing & genuine & (scores < note)))
    return counts


# ---- run --------------------------------------------------------------------------------------


def _images(args: argparse.Namespace) -> list[LabelledImage]:
    images: list[LabelledImage] = []
    for source in args.sources:
        images += load_labels(args.data / "identity" / source / "labels.csv", exclude=COPIES)
    if args.limit_images is not None:
        images = images[: args.limit_images]
    return images


def _plot(curves: Mapping[str, Scores], genuine: BoolArray, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig, det = plt.subplots(figsize=(7, 6))
    for name, scores in curves.items():
        curve = error_curve(scores[genuine], scores[~genuine])
        det.plot(np.maximum(curve.fmr, 1e-5), np.maximum(curve.fnmr, 1e-4), label=name)
    det.set_xscale("log")
    det.set_yscale("log")
    det.set(xlabel="FMR", ylabel="FNMR", title="DET, every image pair (in-sample)")
    det.grid(True, which="both", alpha=0.3)
    det.legend(fontsize=7)
    for target in TARGETS:
        det.axvline(target, color="grey", linestyle=":")
    path = out / "match_det.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return [str(path)]


def _model_key(views: Mapping[str, Views], config: str) -> str:
    """The key of the embedder the server builds for ``config`` (``…+flip``: ``FlipEmbedder``)."""
    base = config.removesuffix("+flip")
    info = views[base].embedder.info
    return (flip_info(info) if config != base else info).key


def _dataset(images: Sequence[LabelledImage], trials: Trials) -> dict[str, Any]:
    per_source = {
        s: {
            "images": sum(1 for i in images if i.source == s),
            "identities": len({i.identity for i in images if i.source == s}),
        }
        for s in sorted({i.source for i in images})
    }
    genuine = int(trials.genuine.sum())
    return {
        "sources": per_source,
        "excluded_copies": list(COPIES),
        "images": len(images),
        "identities": len({i.identity for i in images}),
        "pairs": {"genuine": genuine, "impostor": len(trials) - genuine},
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Embed, score, cross-validate, report and optionally write the policy."""
    start = time.perf_counter()
    images = _images(args)
    names = sorted({i.identity for i in images})
    index = {name: n for n, name in enumerate(names)}
    identity = np.array([index[i.identity] for i in images], dtype=np.int64)
    folds = identity_folds(names, args.folds, args.seed, {i.identity: i.source for i in images})
    setup = Setup(names, np.array([folds[n] for n in names]), args.confidence, args.bootstrap)
    embeddings = Embeddings(args, images)
    views = {f"{e}@{d}": embeddings.views(e, d) for e, d in args.configs}
    sets: dict[str, ScoreSet] = {}
    for config, view in views.items():
        for flip in (False, True):
            vectors = view.vectors(flip)
            sim = view.embedder.similarity
            matrix = similarity_matrix(vectors, vectors, sim, symmetric=True)
            sets[config + ("+flip" if flip else "")] = ScoreSet(vectors, sim, matrix)
    score_time = time.perf_counter()

    pairs = all_pairs(identity)
    genuine = pairs.genuine
    single = {name: _trial_scores(s, pairs, "best") for name, s in sets.items()}
    lfw = np.array([n.startswith("lfw_subset/") for n in names])
    lfw_mask = lfw[pairs.probe_identity] & lfw[pairs.reference_identity]
    single_report: dict[str, Any] = {}
    for name, values in single.items():
        eer, _ = equal_error_rate(values[genuine], values[~genuine])
        single_report[name] = {"eer_in_sample": eer, **_evaluate(setup, pairs, values)}
    for combo in args.fusions:
        fused = _fused([single[n] for n in combo], genuine)
        single_report[" + ".join(combo)] = _evaluate(setup, pairs, fused)
    lfw_report = {
        name: _evaluate(setup, pairs, single[name], lfw_mask) for name in args.calibrate_configs
    }

    multi_report: dict[str, Any] = {"trials": {}}
    for k in args.multi_k:
        trials = multi_frame_trials(identity, k)
        multi_report["trials"][f"k{k}"] = {
            "genuine": int(trials.genuine.sum()),
            "impostor": int((~trials.genuine).sum()),
        }
        for how in ("mean_embedding", "best", "mean"):
            member_scores = {n: _trial_scores(sets[n], trials, how) for n in args.multi_configs}
            for name, values in member_scores.items():
                multi_report.setdefault(name, {})[f"k{k}_{how}"] = _evaluate(setup, trials, values)
            for combo in args.multi_fusions:
                fused = _fused([member_scores[n] for n in combo], trials.genuine)
                label = " + ".join(combo)
                multi_report.setdefault(label, {})[f"k{k}_{how}"] = _evaluate(setup, trials, fused)

    by_key = {_model_key(views, c): single[c] for c in args.calibrate_configs}
    policy_before = json.loads(args.policy.read_text(encoding="utf-8"))
    strict = min(float(r.get("pass_fmr", 0.001)) for r in policy_before["services"].values())
    report: dict[str, Any] = {
        "dataset": _dataset(images, pairs),
        "folds": {
            "k": args.folds,
            "seed": args.seed,
            "identities_per_fold": np.bincount(setup.fold_of).tolist(),
            "images_per_fold": np.bincount(setup.fold_of[identity]).tolist(),
            "split": "identity-disjoint; calibrate on pairs with both sides out of the fold, "
            "count on pairs with both sides in it; pooled",
        },
        "method": {
            "threshold_rule": f"lowest threshold with one-sided {args.confidence:.0%} "
            "Clopper-Pearson upper bound of FMR on calibration impostors <= target",
            "caveat": CAVEAT,
            "bootstrap": f"{args.bootstrap} identity resamples; [2.5%, 97.5%, one-sided 95%]",
        },
        "failures_to_acquire": {
            config: [images[i].file for i, v in enumerate(view.plain) if v is None]
            for config, view in views.items()
        },
        "failed_score": FAILED_SCORE,
        "model_keys": {c: _model_key(views, c) for c in args.calibrate_configs},
        "single_frame": single_report,
        "single_frame_lfw_only": lfw_report,
        "multi_frame": multi_report,
        "shipped_policy": _shipped(setup, pairs, policy_before, by_key),
        "lookalike": {
            key: _lookalikes(setup, pairs, values, strict) for key, values in by_key.items()
        },
    }
    report["best"] = _best(single_report, multi_report)
    if not args.no_plot:
        report["plots"] = _plot({n: single[n] for n in sets}, genuine, args.out)
    if args.calibrate is not None:
        report["thresholds_file"] = _calibrate(args, by_key, genuine)
    if args.write_policy is not None:
        report["policy"] = _write_policy(args, report, by_key, pairs)
    embeddings.timings["score+evaluate"] = time.perf_counter() - score_time
    embeddings.timings["total"] = time.perf_counter() - start
    report["runtime_s"] = {k: round(v, 2) for k, v in embeddings.timings.items()}
    return report


def _best(single: Mapping[str, Any], multi: Mapping[str, Any]) -> dict[str, Any]:
    """The lowest held-out FNMR at FMR 0.1%, single-frame and over every multi-frame variant."""
    key = _key(0.001)
    one = min(single, key=lambda n: (single[n][key]["fnmr"], n))
    options = [
        (entry[key]["fnmr"], f"{name} [{variant}]", entry[key])
        for name, variants in multi.items()
        if name != "trials"
        for variant, entry in variants.items()
    ]
    fnmr, label, entry = min(options, key=lambda o: (o[0], o[1]))
    return {
        "target": {"fnmr_at_fmr_0.1%": 0.02},
        "single_frame": {"config": one, **_brief(single[one][key])},
        "single_frame_met": single[one][key]["fnmr"] <= 0.02,
        "multi_frame": {"config": label, **_brief(entry)},
        "multi_frame_met": fnmr <= 0.02,
    }


def _brief(entry: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("fnmr", "false_non_matches", "genuine", "fmr", "false_matches", "impostor")
    return {k: entry[k] for k in (*keep, "fmr_upper")}


def _write_policy(
    args: argparse.Namespace,
    report: Mapping[str, Any],
    by_key: Mapping[str, Scores],
    pairs: Trials,
) -> dict[str, Any]:
    genuine = pairs.genuine
    identities = (pairs.probe_identity[~genuine], pairs.reference_identity[~genuine])
    calibration = {
        "dataset": " + ".join(f"identity/{s}" for s in args.sources) + " (every image pair)",
        "images": report["dataset"]["images"],
        "identities": report["dataset"]["identities"],
        "pairs": report["dataset"]["pairs"],
        "excluded": "face_recognition multi/ and the 7 copies of obama.jpg",
        "folds": {"k": args.folds, "seed": args.seed, "by": "identity"},
        "configurations": {key: c for c, key in report["model_keys"].items()},
    }
    written = update_policy(
        args.write_policy,
        {key: (values[genuine], values[~genuine]) for key, values in by_key.items()},
        calibration["dataset"],
        confidence=args.confidence,
        note_fmr=NOTE_FMR,
        version_tag=f"ub{round(args.confidence * 100)}b-cv{args.folds}",
        calibration=calibration,
        identities=identities,
    )
    return {"file": str(args.write_policy), "version": written["version"], **written["models"]}


def _calibrate(
    args: argparse.Namespace, by_key: Mapping[str, Scores], genuine: BoolArray
) -> dict[str, Any]:
    """Thresholds at ``--target-fmr`` (upper-bound rule) per model key, to a thresholds file."""
    entries: dict[str, dict[str, Any]] = {}
    for key, values in by_key.items():
        threshold = threshold_at_fmr_upper(values[~genuine], args.target_fmr, args.confidence)
        point = operating_point(values[genuine], values[~genuine], threshold)
        upper = clopper_pearson_upper(point.false_matches, point.impostors, args.confidence)
        entries[key] = {**point.as_dict(), "fmr_upper": upper}
    write_thresholds(args.calibrate, entries, args.target_fmr, "+".join(args.sources))
    return {"file": str(args.calibrate), "thresholds": entries}


def _config(text: str) -> tuple[str, str]:
    embedder, _, detector = text.partition("@")
    if not detector:
        raise argparse.ArgumentTypeError(f"expected <embedder>@<detector>, got {text!r}")
    return embedder, detector


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--data", type=Path, default=_default_dir("CLOUDBRANCH_SHARED_DATA", "data"))
    add("--models", type=Path, default=_default_dir("CLOUDBRANCH_SHARED_MODELS", "models"))
    add("--out", type=Path, default=HERE / "out")
    add("--cache", type=Path, default=HERE / "out" / "cache", help="embedding cache folder")
    add("--no-cache", dest="cache_enabled", action="store_false")
    add("--sources", nargs="+", default=list(SOURCES))
    add("--limit-images", type=int, default=None)
    add(
        "--configs",
        type=_config,
        nargs="+",
        default=[("dlib", "dlib"), ("mobilefacenet", "yunet"), ("mobilefacenet", "dlib")],
    )
    add("--folds", type=int, default=5)
    add("--seed", type=int, default=20261203)
    add("--confidence", type=float, default=0.95)
    add("--bootstrap", type=int, default=2000, help="identity resamples per interval")
    add("--multi-k", type=int, nargs="+", default=[2, 3])
    add("--no-plot", action="store_true")
    add("--policy", type=Path, default=REPO / "verification" / "policy.json", help="to evaluate")
    add("--calibrate", type=Path, default=None, help="thresholds JSON to write")
    add("--target-fmr", type=float, default=0.001)
    add("--write-policy", type=Path, default=None, help="policy file to set thresholds in")
    add(
        "--calibrate-configs",
        nargs="+",
        default=["dlib@dlib", "mobilefacenet@yunet", "mobilefacenet@yunet+flip"],
    )
    args = parser.parse_args(argv)
    configs = {f"{e}@{d}" for e, d in args.configs}
    fusions = [
        ("dlib@dlib", "mobilefacenet@yunet"),
        ("dlib@dlib+flip", "mobilefacenet@yunet+flip"),
        ("dlib@dlib+flip", "mobilefacenet@yunet+flip", "mobilefacenet@dlib+flip"),
    ]
    args.fusions = [c for c in fusions if {n.removesuffix("+flip") for n in c} <= configs]
    args.calibrate_configs = [
        c for c in args.calibrate_configs if c.removesuffix("+flip") in configs
    ]
    args.multi_configs = args.calibrate_configs
    args.multi_fusions = [c for c in args.fusions[1:2] if set(c) <= set(args.multi_configs)]
    if args.multi_fusions:
        args.multi_configs = sorted(set(args.multi_configs) | set(args.multi_fusions[0]))
    return args


def main(argv: list[str] | None = None) -> int:
    """Run and print the JSON report."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    print(json.dumps(run(parse_args(argv)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
