"""Benchmark: face match on a labelled pair list, per backend and fused; optional calibration.

Every image of ``identity/lfw_subset/pairs.csv`` (800 genuine + 4,000 impostor pairs over 400
images) is detected and embedded once per configuration with the project's own backends
(``verification.backends``), in its plain and its mirrored view, so "flip" (mean of both views)
costs nothing extra. Configurations are ``<embedder>@<detector>``: the detector that places the
face (its box for dlib's own 5-point alignment, its 5 landmarks for the ArcFace alignment).

Fusion: z-normalised score sums, cross-fitted over two identity folds (parameters from one fold
applied to the other: ``verification.evaluation.metrics.cross_fitted_fusion``).

Reported per configuration: FNMR at FMR 1% and 0.1% with the thresholds chosen on all impostor
scores (the usual DET reading), and "cross-fold": the threshold chosen on one fold's impostors
applied to the other fold (what a calibrated deployment would get). PNG DET and ROC plots go to
``bench/out/``. ``--calibrate FILE`` writes the thresholds at ``--target-fmr`` per model key.

Prints one JSON object. Usage::

    python bench/eval_match.py [--limit-images N] [--calibrate bench/out/thresholds.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from verification.backends.flip import combine_flip, flip_info, mirror_view
from verification.evaluation.calibrate import write_thresholds
from verification.evaluation.matching import (
    FAILED_SCORE,
    Pair,
    detect_all,
    identity_fold,
    load_pairs,
    pair_scores,
    read_rgb,
    summarise,
)
from verification.evaluation.metrics import (
    Scores,
    cross_fitted_fusion,
    error_curve,
    operating_point,
    threshold_at_fmr,
)
from verification.evaluation.policy_update import update_policy
from verification.types import Face, FaceDetector, FaceEmbedder, Image, Vector

logger = logging.getLogger("bench.eval_match")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PAIRS = "identity/lfw_subset/pairs.csv"
YUNET = "face_detect_yunet/face_detection_yunet_2023mar.onnx"
MOBILEFACENET = "face_recog_mobilefacenet/MobileFaceNet.onnx"
TARGETS = (0.01, 0.001)


@dataclass(frozen=True, slots=True)
class Views:
    """Plain and mirrored embeddings of every image for one configuration."""

    embedder: FaceEmbedder
    plain: dict[str, Vector | None]
    mirrored: dict[str, Vector | None]
    seconds: float

    def vectors(self, flip: bool) -> dict[str, Vector | None]:
        """Per image: the plain vector, or the flip mean."""
        if not flip:
            return self.plain
        out: dict[str, Vector | None] = {}
        for name, vector in self.plain.items():
            other = self.mirrored[name]
            out[name] = None if vector is None or other is None else combine_flip(vector, other)
        return out


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


def _embed_views(
    embedder: FaceEmbedder, faces: dict[str, Face | None], load: Callable[[str], Image]
) -> Views:
    start = time.perf_counter()
    plain: dict[str, Vector | None] = {}
    mirrored: dict[str, Vector | None] = {}
    for name, face in faces.items():
        if face is None:
            plain[name] = mirrored[name] = None
            continue
        image = load(name)
        plain[name] = embedder.embed(image, face)
        mirrored[name] = mirror_view(embedder, image, face)
    return Views(embedder, plain, mirrored, time.perf_counter() - start)


def _cross_fold_point(
    scores: Scores, genuine: npt.NDArray[np.bool_], fold: npt.NDArray[np.int64], target: float
) -> dict[str, float | int]:
    """Threshold from one fold's impostors, errors counted on the other fold; both pooled."""
    false_matches = false_non_matches = 0
    thresholds = []
    for test in (0, 1):
        calib = (fold != test) & ~genuine
        threshold = threshold_at_fmr(scores[calib], target)
        thresholds.append(threshold)
        point = operating_point(
            scores[(fold == test) & genuine], scores[(fold == test) & ~genuine], threshold
        )
        false_matches += point.false_matches
        false_non_matches += point.false_non_matches
    return {
        "fmr": false_matches / int(np.count_nonzero(~genuine)),
        "fnmr": false_non_matches / int(np.count_nonzero(genuine)),
        "false_matches": false_matches,
        "false_non_matches": false_non_matches,
        "thresholds": thresholds,  # type: ignore[dict-item]
    }


def _report(
    scores: Scores, genuine: npt.NDArray[np.bool_], fold: npt.NDArray[np.int64]
) -> dict[str, Any]:
    summary = summarise(scores, genuine)
    summary["cross_fold"] = {
        f"at_fmr_{target:.1%}".replace(".0%", "%"): _cross_fold_point(scores, genuine, fold, target)
        for target in TARGETS
    }
    return summary


def _plot(curves: dict[str, Scores], genuine: npt.NDArray[np.bool_], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    det_fig, det = plt.subplots(figsize=(7, 6))
    roc_fig, roc = plt.subplots(figsize=(7, 6))
    for name, scores in curves.items():
        curve = error_curve(scores[genuine], scores[~genuine])
        floor = 1e-4
        det.plot(np.maximum(curve.fmr, floor), np.maximum(curve.fnmr, floor), label=name)
        roc.plot(np.maximum(curve.fmr, floor), curve.tmr, label=name)
    for axis, ylabel in ((det, "FNMR"), (roc, "TMR (1 − FNMR)")):
        axis.set_xscale("log")
        axis.set_xlabel("FMR")
        axis.set_ylabel(ylabel)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7)
        for target in TARGETS:
            axis.axvline(target, color="grey", linestyle=":")
    det.set_yscale("log")
    det.set_title("DET on lfw_subset pairs")
    roc.set_title("ROC on lfw_subset pairs")
    paths = [out / "match_det.png", out / "match_roc.png"]
    det_fig.savefig(paths[0], dpi=120, bbox_inches="tight")
    roc_fig.savefig(paths[1], dpi=120, bbox_inches="tight")
    plt.close(det_fig)
    plt.close(roc_fig)
    return [str(p) for p in paths]


def _select_pairs(pairs: list[Pair], limit_images: int | None) -> list[Pair]:
    if limit_images is None:
        return pairs
    allowed = set(sorted({p.file_a for p in pairs} | {p.file_b for p in pairs})[:limit_images])
    return [p for p in pairs if p.file_a in allowed and p.file_b in allowed]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Detect, embed, score and report (see the module docstring)."""
    pairs = _select_pairs(load_pairs(args.data / PAIRS), args.limit_images)
    genuine = np.array([p.genuine for p in pairs], dtype=bool)
    fold = identity_fold(pairs)
    images = sorted({p.file_a for p in pairs} | {p.file_b for p in pairs})
    cache: dict[str, Image] = {}

    def load(name: str) -> Image:
        if name not in cache:
            cache[name] = read_rgb(args.data / "identity" / name)
        return cache[name]

    timings: dict[str, float] = {}
    faces: dict[str, dict[str, Face | None]] = {}
    for det_name, make in _detectors(args.models).items():
        start = time.perf_counter()
        faces[det_name] = detect_all(make(), images, load)
        timings[f"detect:{det_name}"] = time.perf_counter() - start
    views: dict[str, Views] = {}
    embedders = _embedders(args.models)
    for emb_name, det_name in args.configs:
        config = f"{emb_name}@{det_name}"
        views[config] = _embed_views(embedders[emb_name](), faces[det_name], load)
        timings[f"embed+mirror:{config}"] = views[config].seconds

    scores: dict[str, Scores] = {}
    for config, view in views.items():
        for flip in (False, True):
            name = config + ("+flip" if flip else "")
            scores[name] = pair_scores(pairs, view.vectors(flip), view.embedder.similarity)
    for combo in args.fusions:
        scores[" + ".join(combo)] = cross_fitted_fusion(
            {name: scores[name] for name in combo}, genuine, fold
        )

    results = {name: _report(values, genuine, fold) for name, values in scores.items()}
    best = min(results, key=lambda n: (results[n]["at_fmr_0.1%"]["fnmr"], n))
    report: dict[str, Any] = {
        "dataset": PAIRS,
        "pairs": {"genuine": int(genuine.sum()), "impostor": int((~genuine).sum())},
        "images": len(images),
        "failures_to_acquire": {
            det: sorted(name for name, face in found.items() if face is None)
            for det, found in faces.items()
        },
        "failed_score": FAILED_SCORE,
        "model_keys": {config: view.embedder.info.key for config, view in views.items()},
        "results": results,
        "best_at_fmr_0.1%": {"config": best, **results[best]["at_fmr_0.1%"]},
        "target": {"fnmr_at_fmr_0.1%": 0.02, "met": results[best]["at_fmr_0.1%"]["fnmr"] <= 0.02},
        "runtime_s": {k: round(v, 2) for k, v in timings.items()},
    }
    if not args.no_plot:
        report["plots"] = _plot(scores, genuine, args.out)
    if args.calibrate is not None:
        report["calibration"] = _calibrate(args, views, scores, genuine)
    if args.write_policy is not None:
        by_model = {
            _model_key(views, c): (scores[c][genuine], scores[c][~genuine])
            for c in args.calibrate_configs
        }
        written = update_policy(args.write_policy, by_model, PAIRS)
        report["policy"] = {"file": str(args.write_policy), "version": written["version"]}
    return report


def _model_key(views: dict[str, Views], config: str) -> str:
    """The key of the embedder the server builds for ``config`` (``…+flip``: ``FlipEmbedder``)."""
    base = config.removesuffix("+flip")
    info = views[base].embedder.info
    return (flip_info(info) if config != base else info).key


def _calibrate(
    args: argparse.Namespace,
    views: dict[str, Views],
    scores: dict[str, Scores],
    genuine: npt.NDArray[np.bool_],
) -> dict[str, Any]:
    """Thresholds at ``--target-fmr`` for the engine's own configurations."""
    entries: dict[str, dict[str, Any]] = {}
    for config in args.calibrate_configs:
        values = scores[config]
        point = operating_point(
            values[genuine],
            values[~genuine],
            threshold_at_fmr(values[~genuine], args.target_fmr),
        )
        entries[_model_key(views, config)] = {**point.as_dict(), "configuration": config}
    write_thresholds(args.calibrate, entries, args.target_fmr, PAIRS)
    return {"file": str(args.calibrate), "thresholds": entries}


def _config(text: str) -> tuple[str, str]:
    embedder, _, detector = text.partition("@")
    if not detector:
        raise argparse.ArgumentTypeError(f"expected <embedder>@<detector>, got {text!r}")
    return embedder, detector


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data", type=Path, default=_default_dir("CLOUDBRANCH_SHARED_DATA", "data")
    )
    parser.add_argument(
        "--models", type=Path, default=_default_dir("CLOUDBRANCH_SHARED_MODELS", "models")
    )
    parser.add_argument("--out", type=Path, default=HERE / "out")
    parser.add_argument("--limit-images", type=int, default=None)
    parser.add_argument(
        "--configs",
        type=_config,
        nargs="+",
        default=[
            ("dlib", "dlib"),
            ("dlib", "yunet"),
            ("mobilefacenet", "yunet"),
            ("mobilefacenet", "dlib"),
        ],
    )
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--calibrate", type=Path, default=None, help="thresholds JSON to write")
    parser.add_argument("--target-fmr", type=float, default=0.001)
    parser.add_argument(
        "--write-policy",
        type=Path,
        default=None,
        help="policy file to set thresholds in, at each service's FMR",
    )
    parser.add_argument(
        "--calibrate-configs",
        nargs="+",
        default=["dlib@dlib", "mobilefacenet@yunet", "mobilefacenet@yunet+flip"],
    )
    args = parser.parse_args(argv)
    args.fusions = [
        ("dlib@dlib", "mobilefacenet@yunet"),
        ("dlib@dlib+flip", "mobilefacenet@yunet+flip"),
        ("dlib@dlib+flip", "mobilefacenet@yunet+flip", "mobilefacenet@dlib+flip"),
        (
            "dlib@dlib+flip",
            "dlib@yunet+flip",
            "mobilefacenet@yunet+flip",
            "mobilefacenet@dlib+flip",
        ),
    ]
    configs = {f"{e}@{d}" for e, d in args.configs}
    args.fusions = [c for c in args.fusions if {n.removesuffix("+flip") for n in c} <= configs]
    return args


def main(argv: list[str] | None = None) -> int:
    """Run and print the JSON report."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    start = time.perf_counter()
    report = run(parse_args(argv))
    report["runtime_s"]["total"] = round(time.perf_counter() - start, 2)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
