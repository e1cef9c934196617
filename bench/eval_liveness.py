"""Benchmark: liveness and match decisions of simulated attempts, genuine and attacks.

For every person of ``verification.evaluation.attacks.PEOPLE`` (enrolled with their photo: a
frame of their clip), ``--attempts`` attempts of each presentation run through the real engine
and attempt state machine (``verification.evaluation.simulator``) with challenges drawn from
what the person's clip contains:

* ``genuine`` — the person answers each challenge with a real segment of their clip;
* ``photo_still`` — their photo held still; ``photo_moved`` — moved as a flat sheet;
* ``replay`` — their clip replayed from the start, looping, ignoring the challenges;
* ``other_person`` — another person of ``PEOPLE`` answering the challenges correctly;
* ``screen_photo`` — ``image_F2.jpg`` (a face on a tablet) enrolled and presented.

Prints one JSON object: APCER per attack type and BPCER with their counts, median time for a
genuine customer to meet three challenges, decision latency after the last challenge.
Deterministic for a given ``--seed``. Usage: ``python bench/eval_liveness.py --attempts 5``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from verification.challenges import Action
from verification.config import build_engine
from verification.engine import FaceEngine, Template, encode_jpeg
from verification.evaluation.attacks import (
    PEOPLE,
    Clip,
    ClipReplay,
    GenuinePresenter,
    MovedSheet,
    Person,
    Presenter,
    StillPhoto,
    load_clip,
    photo_of,
    read_photo,
)
from verification.evaluation.metrics import apcer_per_type, bpcer
from verification.evaluation.simulator import AttemptOutcome, simulate

logger = logging.getLogger("bench.eval_liveness")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SCREEN = "presentation_attack/silent_face/image_F2.jpg"
DLIB_THRESHOLD = 0.4  # 1 − dlib's tolerance 0.6; use --threshold for a calibrated one


def _presenters(
    who: Person, clips: dict[str, Clip], screen: Any, rng: random.Random, size: tuple[int, int]
) -> list[tuple[Presenter, str]]:
    """(presenter, whose reference it is checked against) for every presentation kind."""
    clip = clips[who.name]
    photo = photo_of(who, clip)
    other = next(p for p in PEOPLE if p.name != who.name)
    return [
        (GenuinePresenter(who, clip, rng), who.name),
        (StillPhoto(photo, rng, size=size), who.name),
        (MovedSheet(photo, rng, size=size), who.name),
        (ClipReplay(clip, rng), who.name),
        (GenuinePresenter(other, clips[other.name], rng, kind="other_person"), who.name),
        (StillPhoto(screen, rng, kind="screen_photo", tremor=2.0, size=size), "screen"),
    ]


def _vocabulary(who: Person) -> list[Action]:
    other = next(p for p in PEOPLE if p.name != who.name)
    common = [a for a in who.vocabulary if a in other.vocabulary]
    return [Action(a) for a in (common if len(common) >= 2 else who.vocabulary)]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Enrol, simulate and summarise (see the module docstring)."""
    rng = random.Random(args.seed)
    size = (args.width, args.height)
    engine: FaceEngine = build_engine("dlib")
    clips = {p.name: load_clip(args.data / p.clip, size) for p in PEOPLE}
    screen = read_photo(args.data / SCREEN)
    references: dict[str, Template] = {
        p.name: engine.enrol(encode_jpeg(photo_of(p, clips[p.name]))) for p in PEOPLE
    }
    references["screen"] = engine.enrol(encode_jpeg(screen))
    outcomes: list[AttemptOutcome] = []
    for who in PEOPLE:
        vocabulary = _vocabulary(who)
        for _ in range(args.attempts):
            for presenter, ref in _presenters(who, clips, screen, rng, size):
                outcome = simulate(
                    engine,
                    references[ref],
                    presenter,
                    vocabulary,
                    rng,
                    threshold=args.threshold,
                    fps=args.fps,
                )
                logger.info("%s %s: %s %s", who.name, outcome.kind, outcome.state, outcome.reason)
                outcomes.append(outcome)
    return _summary(outcomes, args)


def _summary(outcomes: list[AttemptOutcome], args: argparse.Namespace) -> dict[str, Any]:
    genuine = [o for o in outcomes if o.kind == "genuine"]
    attacks = [(o.kind, o.accepted) for o in outcomes if o.kind != "genuine"]
    times = [o.completed_at for o in genuine if o.completed_at is not None]
    latency = [o.decision_ms for o in outcomes if o.decision_ms is not None]
    return {
        "seed": args.seed,
        "fps": args.fps,
        "frame_size": [args.width, args.height],
        "match_threshold": args.threshold,
        "decision": "stand-in: liveness passed and best-frame similarity >= threshold "
        "(verification.decision not available yet)",
        "apcer": {k: v.as_dict() for k, v in apcer_per_type(attacks).items()},
        "bpcer": bpcer([o.accepted for o in genuine]).as_dict(),
        "genuine_completion_s": {
            "median": statistics.median(times) if times else None,
            "completed": len(times),
            "attempts": len(genuine),
        },
        "decision_latency_ms": {
            "median": statistics.median(latency) if latency else None,
            "max": max(latency) if latency else None,
            "count": len(latency),
        },
        "attempts": [asdict(o) for o in outcomes] if args.verbose else None,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line (see the module docstring)."""
    default_data = Path(os.environ.get("CLOUDBRANCH_SHARED_DATA", REPO.parent / "shared" / "data"))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=default_data)
    parser.add_argument("--attempts", type=int, default=3, help="per person and kind")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--threshold", type=float, default=DLIB_THRESHOLD)
    parser.add_argument("--verbose", action="store_true", help="list every attempt")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run and print the JSON report."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    start = time.perf_counter()
    report = run(parse_args(argv))
    report["runtime_s"] = round(time.perf_counter() - start, 2)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
