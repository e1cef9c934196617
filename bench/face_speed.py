"""Per-frame analysis time of the face engine on real 640×480 frames, one core; prints JSON.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.face_speed [--kind dlib] [--frames 400]

Clips from ``$CLOUDBRANCH_SHARED_DATA/liveness_video`` are letterboxed to 640×480 and analysed
in order with one tracker per clip (track between detections, as in a call). Target: p95 of the
whole analysis ≤ 40 ms with the dlib backend.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import cv2
import numpy as np

from verification.config import build_engine
from verification.engine import Tracker
from verification.types import Image

logger = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parent.parent
CLIPS = (
    "sadtalker/WDA_KatieHill_000.mp4",
    "liveportrait/d12.mp4",
    "liveportrait/d9.mp4",
    "blink_detector/video.mp4",
    "grid/bbaf2n.mpg",
    "liveportrait/s20.mp4",
)


def letterbox(frame: Image, width: int = 640, height: int = 480) -> Image:
    """``frame`` scaled to fit ``width``×``height`` and padded with black."""
    factor = min(width / frame.shape[1], height / frame.shape[0])
    resized = cv2.resize(frame, (round(frame.shape[1] * factor), round(frame.shape[0] * factor)))
    canvas = np.zeros((height, width, 3), np.uint8)
    top, left = (height - resized.shape[0]) // 2, (width - resized.shape[1]) // 2
    canvas[top : top + resized.shape[0], left : left + resized.shape[1]] = resized
    return canvas


def clip_frames(path: Path, limit: int) -> list[Image]:
    """Up to ``limit`` RGB 640×480 frames of a clip."""
    capture = cv2.VideoCapture(str(path))
    frames: list[Image] = []
    while len(frames) < limit:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(letterbox(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))
    capture.release()
    if not frames:
        raise SystemExit(f"no frames in {path}")
    return frames


def summary(values: list[float]) -> dict[str, float | int]:
    """n, p50, p95, max in ms."""
    if not values:
        return {"n": 0}
    array = np.array(values)
    return {
        "n": len(values),
        "p50": round(float(np.percentile(array, 50)), 2),
        "p95": round(float(np.percentile(array, 95)), 2),
        "max": round(float(array.max()), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="dlib")
    parser.add_argument("--frames", type=int, default=400, help="frames in all (split over clips)")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--models", type=Path, default=None)
    args = parser.parse_args()
    cv2.setNumThreads(1)  # dlib-bin has no BLAS; onnxruntime sessions use one thread
    if os.environ.get("OMP_NUM_THREADS") != "1":
        logger.warning("run with OMP_NUM_THREADS=1 to measure one core")
    data = args.data or Path(
        os.environ.get("CLOUDBRANCH_SHARED_DATA", REPO.parent / "shared" / "data")
    )
    models = args.models or Path(
        os.environ.get("CLOUDBRANCH_SHARED_MODELS", REPO.parent / "shared" / "models")
    )
    engine = build_engine(args.kind, models if args.kind != "dlib" else None)
    per_clip = max(1, args.frames // len(CLIPS))
    stages: dict[str, list[float]] = {}
    tracked = with_face = total = 0
    for clip in CLIPS:
        tracker = Tracker()
        for frame in clip_frames(data / "liveness_video" / clip, per_clip):
            analysis = engine.analyse(frame, tracker)
            total += 1
            tracked += analysis.tracked
            with_face += analysis.face is not None
            for stage, ms in analysis.timings_ms.items():
                stages.setdefault(stage, []).append(ms)
    result = {
        "bench": "face_speed",
        "kind": args.kind,
        "frame": "640x480",
        "threads": 1,
        "frames": total,
        "frames_with_face": with_face,
        "frames_tracked": tracked,
        "clips": list(CLIPS),
        "config": {
            "detect_width": engine.config.detect_width,
            "redetect_every": engine.config.redetect_every,
        },
        "ms": {stage: summary(values) for stage, values in stages.items()},
        "target_total_p95_ms": 40,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
