"""Benchmark: liveness and match decisions of simulated attempts, genuine and attacks.

For every person of ``verification.evaluation.attacks.PEOPLE`` (enrolled with their photo: a
frame of their clip), ``--attempts`` attempts of each presentation run through the real engine,
attempt state machine and the server's decision (``verification.verdict``: best frames embedded
and matched, passive checks, PAD when ``--models`` holds MiniFASNet, ``decision.decide`` with
the policy) in ``verification.evaluation.simulator``, with challenges drawn from what the
presenting person's clip contains:

* ``genuine`` — the person answers each challenge with a real segment of their clip;
* ``photo_still`` — their photo held still; ``photo_moved`` — moved as a flat sheet;
* ``replay`` — their clip replayed from the start, looping, ignoring the challenges, against
  plans drawn as the server draws them (the default vocabulary);
* ``replay_matched`` — the same, against plans drawn only from the actions the clip contains:
  the worst case, an attacker holding a recording of the victim performing every action asked;
* ``other_person`` — another person of ``PEOPLE`` answering the challenges correctly (drawn from
  what *that* person can do), checked against the first person's reference;
* ``screen_photo`` — ``image_F2.jpg`` (a face on a tablet) enrolled and presented;
* the swaps of ``verification.evaluation.swaps`` (``swap_pauses``, ``swap_baseline``,
  ``swap_mid_challenge``, ``swap_blurred``, ``swap_clip``, ``second_face``): the victim's photo
  (or clip) in front of the camera when it does not count and another real person answering the
  challenges (the plan drawn from that person's vocabulary), checked against the victim;
* ``talker`` — each GRID speaker of ``TALKERS`` talking on a loop against the server's plans:
  as an attack, a replayed talking head (it must never pass); as a customer, somebody chatting
  while they wait, reported apart (``talkers``): how many got through the baseline and the first
  "hold still" pause to the first challenge, and what stopped the others before it (talking is
  not a movement before the prompt).

Genuine attempts run for every usable person (``Person.usable``: a clip with a head movement and
another action) of ``EVERYONE``; attacks target the three people of ``PEOPLE``. ``--per-action``
runs plans of one challenge for every action of every person of ``EVERYONE`` (the clips of the
extras hold one or two actions only): the detection rate of each action on real movement.

Prints one JSON object: APCER per attack type and BPCER with their counts, what stopped each
attack (reason codes; "timeout only" when nothing but a challenge timeout did), median time for
a genuine customer to meet three challenges, decision latency after the last challenge (split
into scoring the best frames and the checks). Deterministic for a given ``--seed`` whatever
``--jobs``: every attempt has its own seeded generator.
Usage: ``python bench/eval_liveness.py --genuine 20 --attempts 14 --per-action 4 --jobs 2``.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import multiprocessing
import os
import random
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from verification.challenges import (
    DEFAULT_VOCABULARY,
    PAUSE,
    Action,
    Challenge,
    ChallengePlan,
)
from verification.config import build_engine
from verification.engine import FaceEngine, Template, encode_jpeg
from verification.evaluation.attacks import (
    EVERYONE,
    PEOPLE,
    TALKERS,
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
from verification.evaluation.swaps import SWAP_KINDS, make_swap
from verification.policy import load_policy

logger = logging.getLogger("bench.eval_liveness")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SCREEN = "presentation_attack/silent_face/image_F2.jpg"
ATTACKS = (
    "photo_still",
    "photo_moved",
    "replay",
    "replay_matched",
    "other_person",
    "screen_photo",
    *SWAP_KINDS,
    "talker",
)
KINDS = ("genuine", *ATTACKS)
# What can stop an attempt before its first challenge is shown.
WAITING_STOPS = ("moved_before_prompt", "baseline_timed_out", "face_lost", "undecided", "aborted")
PASSIVE = ("liveness.planar_motion", "liveness.frozen", "identity.changed", "pad.spoof")
GENUINE = tuple(p for p in EVERYONE if p.usable)
BY_NAME = {p.name: p for p in EVERYONE + TALKERS}


def _other(who: Person) -> Person:
    return next(p for p in PEOPLE if p.name != who.name)


def _presenter(
    kind: str, who: Person, clips: dict[str, Clip], screen: Any, rng: random.Random, size: Any
) -> tuple[Presenter, str, Person | None]:
    """(presenter, whose reference it is checked against, whose clip the challenges are drawn
    from: None for the server's own vocabulary)."""
    clip = clips[who.name]
    photo = photo_of(who, clip)
    if kind == "genuine":
        return GenuinePresenter(who, clip, rng), who.name, who
    if kind == "photo_still":
        return StillPhoto(photo, rng, size=size), who.name, who
    if kind == "photo_moved":
        return MovedSheet(photo, rng, size=size), who.name, who
    if kind == "replay":
        return ClipReplay(clip, rng), who.name, None
    if kind == "replay_matched":
        return ClipReplay(clip, rng, kind=kind), who.name, who
    if kind == "talker":
        return ClipReplay(clip, rng, kind=kind), who.name, None
    if kind == "other_person":
        other = _other(who)
        presenter = GenuinePresenter(other, clips[other.name], rng, kind="other_person")
        return presenter, who.name, other
    if kind == "screen_photo":
        return StillPhoto(screen, rng, kind=kind, tremor=2.0, size=size), "screen", who
    if kind in SWAP_KINDS:
        other = _other(who)
        swap = make_swap(kind, photo, clip, other, clips[other.name], rng, size=size)
        return swap, who.name, other
    raise ValueError(kind)


_STATE: dict[str, Any] = {}


def _init(args: argparse.Namespace) -> None:
    """Load the engine, clips and references once per worker process."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    size = (args.width, args.height)
    engine: FaceEngine = build_engine(args.backend, args.models)
    clips = {p.name: load_clip(args.data / p.clip, size) for p in EVERYONE + TALKERS}
    screen = read_photo(args.data / SCREEN)
    references: dict[str, Template] = {
        p.name: engine.enrol(encode_jpeg(photo_of(p, clips[p.name]))) for p in EVERYONE + TALKERS
    }
    references["screen"] = engine.enrol(encode_jpeg(screen))
    _STATE.update(
        args=args,
        engine=engine,
        clips=clips,
        screen=screen,
        refs=references,
        size=size,
        policy=load_policy(args.policy),
    )


def _one(job: tuple[str, str, int]) -> dict[str, Any]:
    """One attempt: (person, kind, index) with its own generator; kind "action:<name>" is a
    genuine attempt with a plan of that one challenge."""
    name, kind, index = job
    args = _STATE["args"]
    who = BY_NAME[name]
    rng = random.Random(f"{args.seed}:{name}:{kind}:{index}")
    plan = None
    if kind.startswith("action:"):
        action = Action(kind.split(":", 1)[1])
        pause = round(rng.uniform(*(args.pause or PAUSE)), 3)
        plan = ChallengePlan(f"{name}-{kind}-{index}", (Challenge(action, 8.0, pause),))
    presenter, ref, chooser = _presenter(
        "genuine" if plan else kind, who, _STATE["clips"], _STATE["screen"], rng, _STATE["size"]
    )
    outcome: AttemptOutcome = simulate(
        _STATE["engine"],
        _STATE["refs"][ref],
        presenter,
        [Action(a) for a in chooser.vocabulary] if chooser else list(DEFAULT_VOCABULARY),
        rng,
        policy=_STATE["policy"],
        service=args.service,
        fps=args.fps,
        camera_fps=args.camera_fps,
        plan=plan,
        pause=args.pause,
    )
    row = {"person": name, **asdict(outcome)}
    events = [event for _, event, _ in outcome.timeline]
    row["reached_first_challenge"] = "challenge_shown" in events
    row["stopped_while_waiting"] = (
        next((e for e in events if e in WAITING_STOPS), None)
        if not row["reached_first_challenge"]
        else None
    )
    if plan is not None:
        row["kind"] = kind
    row.pop("timeline", None) if not args.verbose else None
    return row


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Simulate every (person, kind, attempt) and summarise (see the module docstring)."""
    kinds = set(args.kinds.split(",")) if args.kinds else set(KINDS)
    unknown = kinds - set(KINDS)
    if unknown:
        raise SystemExit(f"unknown --kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
    genuine = args.genuine if "genuine" in kinds else 0
    jobs = [(p.name, "genuine", i) for i in range(genuine) for p in GENUINE]
    jobs += [
        (p.name, k, i)
        for i in range(args.attempts)
        for p in PEOPLE
        for k in ATTACKS
        if k in kinds and k != "talker"
    ]
    if "talker" in kinds:
        jobs += [(p.name, "talker", i) for i in range(args.attempts) for p in TALKERS]
    jobs += [
        (p.name, f"action:{a}", i)
        for i in range(args.per_action)
        for p in EVERYONE
        for a in p.vocabulary
    ]
    if args.jobs > 1:
        context = multiprocessing.get_context("spawn")
        with context.Pool(args.jobs, initializer=_init, initargs=(args,)) as pool:
            rows = pool.map(_one, jobs, chunksize=1)
    else:
        _init(args)
        rows = [_one(job) for job in jobs]
    for row in rows:
        logger.info("%s %s: %s %s", row["person"], row["kind"], row["outcome"], row["reasons"])
    return _summary(rows, args)


def _breakdown(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What stopped the attempts of one attack type."""
    stopped = collections.Counter(",".join(r["stopped_by"]) or "nothing" for r in rows)
    passive = sum(1 for r in rows if set(r["reasons"]) & set(PASSIVE))
    timeout_only = sum(
        1
        for r in rows
        if not r["accepted"] and set(r["stopped_by"]) <= {"liveness.challenge_timeout"}
    )
    return {
        "stopped_by": dict(stopped.most_common()),
        "with_a_passive_finding": passive,
        "challenge_timeout_only": timeout_only,
        "accepted_per_person": _per_person(rows),
        "liveness_passed": sum(1 for r in rows if r["liveness_passed"]),
    }


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _per_action(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Detection of each action in plans of one challenge: met within its time limit."""
    out: dict[str, Any] = {}
    for action in sorted({r["kind"].split(":", 1)[1] for r in rows}):
        mine = [r for r in rows if r["kind"] == f"action:{action}"]
        people = sorted({r["person"] for r in mine})
        met = sum(1 for r in mine if r["liveness_passed"])
        out[action] = {
            "detected": met,
            "attempts": len(mine),
            "rate": round(met / len(mine), 4) if mine else None,
            "people": len(people),
            "per_person": {
                p: f"{sum(1 for r in mine if r['person'] == p and r['liveness_passed'])}/"
                f"{sum(1 for r in mine if r['person'] == p)}"
                for p in people
            },
            "missed_by": dict(
                collections.Counter(
                    r["reason"] or "decision" for r in mine if not r["liveness_passed"]
                )
            ),
        }
    return out


def _talkers(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """GRID speakers talking while they wait: who reached the first challenge."""
    if not rows:
        return None
    names = sorted({r["person"] for r in rows})
    return {
        "reached_first_challenge": sum(1 for r in rows if r["reached_first_challenge"]),
        "attempts": len(rows),
        "per_person": {
            n: f"{sum(1 for r in rows if r['person'] == n and r['reached_first_challenge'])}/"
            f"{sum(1 for r in rows if r['person'] == n)}"
            for n in names
        },
        "stopped_while_waiting": dict(
            collections.Counter(
                r["stopped_while_waiting"] or "other"
                for r in rows
                if not r["reached_first_challenge"]
            )
        ),
        "measured_as": "a talking head looped from the attempt's start: the baseline and the first "
        "hold-still pause passed while talking (the challenges themselves are not answered)",
    }


def _per_person(rows: list[dict[str, Any]]) -> dict[str, str]:
    names = sorted({r["person"] for r in rows})
    return {
        n: f"{sum(1 for r in rows if r['person'] == n and r['accepted'])}/"
        f"{sum(1 for r in rows if r['person'] == n)}"
        for n in names
    }


def _summary(rows: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    actions = [r for r in rows if r["kind"].startswith("action:")]
    rows = [r for r in rows if not r["kind"].startswith("action:")]
    genuine = [r for r in rows if r["kind"] == "genuine"]
    attacks = [(r["kind"], r["accepted"]) for r in rows if r["kind"] != "genuine"]
    times = [r["completed_at"] for r in genuine if r["completed_at"] is not None]
    totals = [r["completed_total"] for r in genuine if r.get("completed_total") is not None]
    latency = [r["decision_ms"] for r in rows if r["decision_ms"] is not None]
    scoring = [r["scoring_ms"] for r in rows if r["decision_ms"] is not None]
    return {
        "seed": args.seed,
        "fps": args.fps,
        "frame_size": [args.width, args.height],
        "backend": args.backend,
        "pad_model": bool(args.models),
        "service": args.service,
        "pause_s": list(args.pause or PAUSE),
        "policy_version": _STATE.get("policy").version
        if _STATE.get("policy")
        else load_policy(args.policy).version,
        "decision": "verification.verdict (server's decision: best frames embedded, passive "
        "checks, PAD if any, decision.decide with the policy)",
        "apcer": {k: v.as_dict() for k, v in apcer_per_type(attacks).items()},
        "bpcer": bpcer([r["accepted"] for r in genuine]).as_dict(),
        "genuine_accepted_per_person": _per_person(genuine),
        "per_action_detection": _per_action(actions),
        "genuine_failures": dict(
            collections.Counter(",".join(r["stopped_by"]) for r in genuine if not r["accepted"])
        ),
        "attacks_stopped_by": {
            kind: _breakdown([r for r in rows if r["kind"] == kind]) for kind in ATTACKS
        },
        "genuine_completion_s": {
            "median": statistics.median(times) if times else None,
            "p90": _pct(times, 0.9),
            "completed": len(times),
            "attempts": len(genuine),
            "measured_from": "first challenge shown to third challenge met",
            "total_median": statistics.median(totals) if totals else None,
            "total_measured_from": "end of the baseline (first hold-still pause) to third met",
        },
        "decision_latency_ms": {
            "median": statistics.median(latency) if latency else None,
            "p95": _pct(latency, 0.95),
            "max": max(latency) if latency else None,
            "scoring_median": statistics.median(scoring) if scoring else None,
            "count": len(latency),
            "measured_as": "simulator, one process: embedding the bound frames left after the "
            "last challenge, comparing and judging",
        },
        "talkers": _talkers([r for r in rows if r["kind"] == "talker"]),
        "bound_frames_median": statistics.median(r["bound"] for r in rows) if rows else None,
        "genuine_match_scores": sorted(
            round(r["match_score"], 3) for r in genuine if r["match_score"] is not None
        ),
        "attempts": rows if args.verbose else None,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line (see the module docstring)."""
    default_data = Path(os.environ.get("CLOUDBRANCH_SHARED_DATA", REPO.parent / "shared" / "data"))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=default_data)
    parser.add_argument("--attempts", type=int, default=3, help="per attacked person and attack")
    parser.add_argument("--genuine", type=int, default=3, help="genuine attempts per person")
    parser.add_argument("--per-action", type=int, default=0, help="one-challenge plans per action")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--camera-fps", type=float, default=30.0, help="while a blink is asked")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--backend", default="dlib", choices=("dlib", "onnx", "fused"))
    parser.add_argument("--models", type=Path, default=None, help="models folder (adds PAD)")
    parser.add_argument("--policy", type=Path, default=None, help="default: the packaged one")
    parser.add_argument("--service", default="pin_change")
    parser.add_argument(
        "--pause",
        type=lambda v: tuple(float(x) for x in v.split(",")),
        default=None,
        help='"min,max" seconds of the hold-still pauses (default: the server\'s)',
    )
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--verbose", action="store_true", help="list every attempt")
    parser.add_argument(
        "--kinds",
        default="",
        help="comma-separated presenter kinds to run (default: all; --per-action runs apart)",
    )
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
