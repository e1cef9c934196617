"""Benchmark: co-browsing latency (customer input → advisor replay) and bytes per minute.

Runs the real thing on loopback: ``cloudbranch serve`` (seeded like the browser tests, face
workers off), two Chromium processes (customer and advisor, as in ``tests/e2e``), a call, and a
co-browse session accepted by the customer. Then:

* **latency**: the customer types into the chat field at a human pace (every keystroke's time is
  taken in the customer's page on its ``input`` event); the advisor's page watches the replayed
  field every animation frame and notes when its (masked) length reaches each value. Both
  browsers read the same system clock (``Date.now()``); a frame is ~16 ms, so figures are
  ±16 ms. The replay runs ``BUFFER_MS`` behind each batch's arrival (cobrowse_advisor.js).
* **bytes per minute**: a typical minute on the call page — the pointer moving, scrolling,
  typing and clearing the chat field, the live videos playing — measured as the bytes of every
  ``cobrowse.events`` frame the customer's browser sent, with and without the first full snapshot.

Prints one JSON object. Usage (as root, loopback only):
``scripts/loopback-only.sh .venv/bin/python bench/cobrowse.py --rounds 5 --seconds 60``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO)]

from playwright.async_api import async_playwright  # noqa: E402

from tests.e2e.clips import Clip, FaceFinder, convert_clip  # noqa: E402
from tests.e2e.conftest import (  # noqa: E402
    ADVISOR_CLIP,
    CUSTOMER_CLIP,
    VERIFY_CLIP,
    YUNET,
    Browsers,
    Server,
    launch_server,
)
from tests.e2e.test_cobrowse import start_sharing  # noqa: E402
from tests.e2e.test_services import Visit, accept, start  # noqa: E402

CUSTOMER_WATCH_JS = """() => {
  window.__cbTyped = [];
  document.getElementById('chat-input').addEventListener('input',
    (e) => window.__cbTyped.push([e.target.value.length, Date.now()]));
}"""
ADVISOR_WATCH_JS = """() => {
  window.__cbSeen = [];
  let last = -1;
  const tick = () => {
    const f = document.querySelector('#cobrowse-stage iframe');
    const el = f && f.contentDocument && f.contentDocument.querySelector('#chat-input');
    const n = el ? el.value.length : -1;
    if (n !== last) { last = n; window.__cbSeen.push([n, Date.now()]); }
    requestAnimationFrame(tick);
  };
  tick();
}"""


class _Dirs:
    """What ``launch_server`` needs of pytest's ``tmp_path_factory``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.n = 0

    def mktemp(self, name: str) -> Path:
        self.n += 1
        path = self.root / f"{name}{self.n}"
        path.mkdir()
        return path


def _clips(shared: Path, models: Path, out: Path) -> dict[str, Clip]:
    finder = FaceFinder(models / YUNET)
    sources = {"customer": CUSTOMER_CLIP, "advisor": ADVISOR_CLIP, "verifier": VERIFY_CLIP}
    return {name: convert_clip(name, shared / src, out, finder) for name, src in sources.items()}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _latencies(typed: list[list[int]], seen: list[list[int]]) -> list[float]:
    """For each keystroke (length, time): when the replay first showed that length after it."""
    out = []
    for length, at in typed:
        shown = [t for n, t in seen if n == length and t >= at - 1]
        if shown:
            out.append(float(shown[0] - at))
    return out


async def _latency_rounds(visit: Visit, rounds: int, chars: int) -> list[float]:
    cust, advisor = visit.cust, visit.advisor
    await cust.evaluate(CUSTOMER_WATCH_JS)
    await advisor.evaluate(ADVISOR_WATCH_JS)
    await cust.click("#chat-input")
    found: list[float] = []
    rng = random.Random(6)
    for _ in range(rounds):
        await cust.evaluate("() => { window.__cbTyped = []; }")
        await advisor.evaluate("() => { window.__cbSeen = []; }")
        for _ in range(chars):
            await cust.keyboard.type(rng.choice("abcdefghijklmnopqrstuvwxyz "))
            await asyncio.sleep(rng.uniform(0.06, 0.18))  # 5–15 keys a second
        await asyncio.sleep(1.0)
        typed = await cust.evaluate("() => window.__cbTyped")
        seen = await advisor.evaluate("() => window.__cbSeen")
        found.extend(_latencies(typed, seen))
        await cust.fill("#chat-input", "")
        await asyncio.sleep(0.5)
    return found


def _event_bytes(raw: list[str]) -> list[int]:
    return [len(r.encode()) for r in raw if '"cobrowse.events"' in r[:60]]


async def _typical_minute(visit: Visit, seconds: float) -> dict[str, Any]:
    """The customer's page in use for ``seconds``: pointer, scrolling, typing, clearing."""
    cust = visit.cust
    before = len(visit.customer_sent.raw)
    rng = random.Random(7)
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        for _ in range(10):
            await cust.mouse.move(rng.uniform(50, 1200), rng.uniform(50, 850), steps=5)
            await asyncio.sleep(0.1)
        await cust.mouse.wheel(0, rng.choice((-400, 300, 600)))
        await cust.click("#chat-input")
        await cust.keyboard.type("where do I find the button", delay=120)
        await asyncio.sleep(1.0)
        await cust.fill("#chat-input", "")
    took = time.monotonic() - t0
    sizes = _event_bytes(visit.customer_sent.raw[before:])
    return {"seconds": round(took, 1), "bytes": sum(sizes), "messages": len(sizes)}


async def run(server: Server, clips: dict[str, Clip], out: Path, args: argparse.Namespace) -> Any:
    async with async_playwright() as pw:
        browsers = Browsers(pw, out)
        try:
            visit = await start(browsers, server, clips, "svc_card_loss", "card_loss")
            await accept(visit)
            first = len(visit.customer_sent.raw)
            await start_sharing(visit)
            await asyncio.sleep(1.0)
            snapshot = _event_bytes(visit.customer_sent.raw[first:])
            latencies = await _latency_rounds(visit, args.rounds, args.chars)
            minute = await _typical_minute(visit, args.seconds)
        finally:
            await browsers.close()
    per_minute = minute["bytes"] * 60.0 / minute["seconds"]
    return {
        "latency_ms": {
            "samples": len(latencies),
            "p50": round(statistics.median(latencies), 1),
            "p95": round(_percentile(latencies, 0.95), 1),
            "max": round(max(latencies), 1),
            "target_p95": 300,
        },
        "session": {
            "start_bytes": sum(snapshot),  # the first batches: meta + full snapshot of /call
            "typical_seconds": minute["seconds"],
            "typical_messages": minute["messages"],
            "bytes_per_minute": round(per_minute),
            "bytes_per_minute_with_start": round(per_minute + sum(snapshot)),
        },
        "setup": {
            "loopback": True,
            "flush_ms": 100,
            "replay_buffer_ms": 60,
            "chars_per_round": args.chars,
            "rounds": args.rounds,
        },
    }


def _serve(shared: Path, clips: dict[str, Clip], dirs: _Dirs) -> Generator[Server, None, None]:
    factory: Any = dirs  # only its mktemp() is used
    settings = {"CLOUDBRANCH_FACE_WORKERS": "0", "CLOUDBRANCH_LOG_LEVEL": "WARNING"}
    yield from launch_server(shared, clips, factory, **settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chars", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    shared = Path(os.environ.get("CLOUDBRANCH_SHARED_DATA", REPO.parent / "shared" / "data"))
    models = Path(os.environ.get("CLOUDBRANCH_SHARED_MODELS", REPO.parent / "shared" / "models"))
    with tempfile.TemporaryDirectory(prefix="bench-cobrowse-") as tmp:
        dirs = _Dirs(Path(tmp))
        clips = _clips(shared.resolve(), models.resolve(), dirs.mktemp("media"))
        server_gen = _serve(shared.resolve(), clips, dirs)
        server = next(server_gen)
        try:
            result = asyncio.run(run(server, clips, dirs.mktemp("shots"), args))
        finally:
            server_gen.close()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
