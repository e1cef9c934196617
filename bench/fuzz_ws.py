"""Benchmark: fuzz the WebSocket of a running server (issue 12), loopback only, bounded.

Starts ``cloudbranch seed-demo`` and ``cloudbranch serve`` in a temporary data directory, opens
customer sockets (four on each demo customer's case: a customer holds one case at a time, and a
case takes four sockets) and advisor sockets, and sends fuzzed frames at the socket's allowed
rate (18 a second, under the server's bucket of 20), so that every frame reaches the codec:
frames shaped like each client message with arbitrary JSON in its fields, lone surrogates,
nesting up to 30,000 levels, numbers of up to 5,000 digits, cut-off JSON, invalid UTF-8 (binary
frames), frames over the size limit, raw text.
After every batch each socket must answer a ``ping`` with a ``pong`` within 5 s, else it is
counted as wedged. A socket the server closes is counted by its close code and reopened.

Prints JSON: frames sent, replies by error code, tracebacks and ERROR lines in the server's
log, whether the server crashed, wedged sockets, close codes, RSS of the server before and after
and every 10 s (its growth after the first quarter of the frames, once every session is open).
Target: 0 tracebacks, 0 crashes, 0 wedged, RSS flat.

    python bench/fuzz_ws.py [--frames 100000] [--customers 24] [--advisors 8] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from banking.demo import DEMO_CUSTOMERS, DEMO_PASSWORD  # noqa: E402
from signaling.messages import CLIENT_TYPES  # noqa: E402

RATE = 18.0  # frames a second per socket (the server's bucket refills at 20)
BATCH = 90  # frames between two liveness probes of a socket
PROBE_TIMEOUT = 5.0
MAX_BYTES = 64 * 1024
FIELDS = (
    "v",
    "type",
    "status",
    "case_id",
    "sdp",
    "text",
    "camera_label",
    "attempt_id",
    "reason",
    "approval_id",
    "approve",
    "events",
    "x",
    "y",
    "node_id",
    "selector",
    "points",
    "width",
    "height",
)
# Types a fuzzer must not send well-formed: they end the customer's case or the advisor's call
# for good, and the bench would only measure reconnecting.
ENDING = {"queue.leave", "call.hangup"}


# ---- frames ---------------------------------------------------------------------------------


class Frames:
    """Fuzzed frames from a seeded generator: ``(payload, binary)``."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.kinds: collections.Counter[str] = collections.Counter()

    def _text(self, n: int) -> str:
        rng = self.rng
        pools = (
            lambda: chr(rng.randrange(0x20, 0x7F)),
            lambda: chr(rng.randrange(0xD800, 0xE000)),  # lone surrogates
            lambda: chr(rng.randrange(0, 0x20)),
            lambda: chr(rng.randrange(0x4E00, 0x9FFF)),
            lambda: chr(rng.randrange(0x10000, 0x10FFFF)),
            lambda: rng.choice("²٣１\u200b\ufeff\u202e\"\\</>&'"),
        )
        weights = (60, 2, 4, 20, 6, 8)  # a lone surrogate in one string of ten or so
        return "".join(rng.choices(pools, weights)[0]() for _ in range(n))

    def _value(self, depth: int = 0) -> Any:
        rng = self.rng
        pick = rng.randrange(10 if depth < 3 else 7)
        if pick == 0:
            return None
        if pick == 1:
            return rng.choice((True, False))
        if pick == 2:
            return rng.randint(-(2**70), 2**70)
        if pick == 3:
            return rng.choice((0, -1, 2**31 - 1, 2**31, 2**63, 2**64, 10**30))
        if pick == 4:
            return rng.choice((0.5, -1e308, 1e308, 3.0, 1.5, -0.0, 2.5e-300, float("nan")))
        if pick in (5, 6):
            return self._text(rng.randrange(0, 40))
        if pick in (7, 8):
            return [self._value(depth + 1) for _ in range(rng.randrange(0, 5))]
        return {self._text(rng.randrange(0, 8)): self._value(depth + 1) for _ in range(3)}

    def next(self, role: str) -> tuple[str | bytes, bool]:
        payload, binary = self._next()
        if isinstance(payload, str):
            try:
                payload.encode()
            except UnicodeEncodeError:  # lone surrogates cannot travel in a text frame
                return payload.encode("utf-8", "surrogatepass"), True
        return payload, binary

    def _next(self) -> tuple[str | bytes, bool]:
        rng = self.rng
        trick = rng.choices(
            ("shaped", "deep", "digits", "cut", "utf8", "oversize", "raw", "empty"),
            weights=(60, 6, 6, 8, 5, 2, 10, 3),
        )[0]
        self.kinds[trick] += 1
        if trick == "raw":
            return self._text(rng.randrange(0, 200)), False
        if trick == "empty":
            return rng.choice(("", " ", "null", "[]", "{}", '""', "0")), False
        if trick == "oversize":
            return '{"type":"chat.send","text":"' + "x" * (MAX_BYTES + 10) + '"}', False
        kinds = sorted(CLIENT_TYPES - ENDING)
        kind: Any = rng.choice(kinds) if rng.random() < 0.85 else self._value()
        msg: dict[str, Any] = {"type": kind}
        for name in rng.sample(FIELDS, rng.randrange(0, 5)):
            msg[name] = self._value()
        text = json.dumps(msg, ensure_ascii=rng.random() < 0.7, allow_nan=True)
        if trick == "deep":
            depth = rng.choice((150, 199, 200, 201, 256, 1000, 30_000))
            closed = rng.choice((0, depth))
            text = text[:-1] + ',"x":' + "[" * depth + "]" * closed + "}"
        elif trick == "digits":
            digits = rng.choice((19, 20, 4300, 4301, 5000))
            field = rng.choice(("approval_id", "attempt_id", "x", "v"))
            text = text[:-1] + f',"{field}":' + "9" * digits + "}"
        elif trick == "cut":
            text = text[: rng.randrange(0, len(text) + 1)]
        elif trick == "utf8":
            raw = text.encode("utf-8", "surrogatepass")
            cut = rng.randrange(0, len(raw) + 1)
            return raw[:cut] + bytes([rng.choice((0xC3, 0xFF, 0xED, 0x80))]) + raw[cut:], True
        return text, False


# ---- server ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Server:
    """``cloudbranch serve`` on a free loopback port, demo data seeded."""

    def __init__(self, root: Path) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = root / "server.log"
        cli = Path(sys.executable).parent / "cloudbranch"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDBRANCH_")}
        env.update(
            CLOUDBRANCH_DATA_DIR=str(root / "data"),
            CLOUDBRANCH_HOST="127.0.0.1",
            CLOUDBRANCH_PORT=str(self.port),
            CLOUDBRANCH_ICE_LOOPBACK_ONLY="1",
            CLOUDBRANCH_SHARED_DATA=str((REPO / ".." / "shared" / "data").resolve()),
            CLOUDBRANCH_LOG_LEVEL="INFO",
            CLOUDBRANCH_FACE_WORKERS="1",
            # aiohttp's client keeps Secure cookies for HTTPS only (a browser would send them
            # to a loopback host): the bench's sessions need them over plain HTTP.
            CLOUDBRANCH_COOKIE_SECURE="never",
            # Each demo customer opens a case per socket, and again after each close.
            CLOUDBRANCH_CASES_PER_CUSTOMER_HOUR="100000",
            # 40 sessions identify at once from the bench's one address: an identification
            # counts against the address while it is under way (the burst limit), and 5 would
            # refuse most of them.
            CLOUDBRANCH_IDENTIFY_ATTEMPTS="1000",
        )
        with self.log.open("ab") as fh:
            subprocess.run(
                [str(cli), "seed-demo"], env=env, cwd=REPO, stdout=fh, stderr=fh, check=True
            )
            self.proc = subprocess.Popen(
                [str(cli), "serve"], env=env, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT
            )

    async def wait_healthy(self) -> None:
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise SystemExit(f"the server exited with {self.proc.returncode}")
                try:
                    async with http.get(self.base + "/healthz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        raise SystemExit("the server did not answer /healthz within 60 s")

    def stop(self) -> int | None:
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None


# ---- clients --------------------------------------------------------------------------------


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    if not found:
        raise RuntimeError("page has no CSRF field")
    return found.group(1)


class CustomerSessions:
    """One browser session per demo customer, shared by that customer's sockets (a customer
    holds one case at a time: identifying again would end the case the other sockets are on;
    the server allows 4 sockets per case)."""

    def __init__(self, base: str) -> None:
        self._base = base
        self._open: dict[int, asyncio.Task[aiohttp.ClientSession]] = {}

    async def get(self, who: int) -> aiohttp.ClientSession:
        person = who % len(DEMO_CUSTOMERS)
        if person not in self._open:
            self._open[person] = asyncio.create_task(_customer_session(self._base, person))
        return await self._open[person]

    async def close(self) -> None:
        for task in self._open.values():
            if task.done() and task.exception() is None:
                await task.result().close()


async def _customer_session(base: str, who: int) -> aiohttp.ClientSession:
    person = DEMO_CUSTOMERS[who]
    http = aiohttp.ClientSession(base_url=base, cookie_jar=aiohttp.CookieJar(unsafe=True))
    page = await (await http.get("/identify?service=pin_change")).text()
    resp = await http.post(
        "/identify",
        data={
            "csrf_token": _csrf(page),
            "service": "pin_change",
            "name": person.name,
            "id_number": person.id_number,
            "card_last4": person.card_number[-4:],
        },
        allow_redirects=False,
    )
    if resp.status != 303:
        await http.close()
        raise RuntimeError(f"identification answered {resp.status}")
    page = await (await http.get("/consent")).text()
    await http.post("/consent", data={"csrf_token": _csrf(page), "accept": "on"})
    return http


async def _advisor_session(base: str, who: int) -> aiohttp.ClientSession:
    http = aiohttp.ClientSession(base_url=base, cookie_jar=aiohttp.CookieJar(unsafe=True))
    page = await (await http.get("/staff/login")).text()
    resp = await http.post(
        "/staff/login",
        data={
            "csrf_token": _csrf(page),
            "username": f"advisor{who % 2 + 1}",
            "password": DEMO_PASSWORD,
        },
        allow_redirects=False,
    )
    if resp.status != 303:
        await http.close()
        raise RuntimeError(f"staff login answered {resp.status}")
    return http


class Tally:
    def __init__(self) -> None:
        self.sent = 0
        self.replies: collections.Counter[str] = collections.Counter()
        self.closes: collections.Counter[str] = collections.Counter()
        self.wedged = 0
        self.probes = 0
        self.reopen_failures = 0


async def _fuzz_socket(
    base: str,
    role: str,
    who: int,
    frames: Frames,
    quota: int,
    tally: Tally,
    customers: CustomerSessions,
) -> None:
    shared = role == "customer"
    http = await (customers.get(who) if shared else _advisor_session(base, who))
    try:
        ws = await http.ws_connect("/ws", origin=base, max_msg_size=0)
        sent = 0
        while sent < quota:
            for _ in range(min(BATCH, quota - sent)):
                payload, binary = frames.next(role)
                started = time.monotonic()
                try:
                    if binary:
                        await ws.send_bytes(
                            payload if isinstance(payload, bytes) else payload.encode()
                        )
                    else:
                        await ws.send_str(payload if isinstance(payload, str) else payload.decode())
                except (ConnectionResetError, aiohttp.ClientError):
                    break
                sent += 1
                tally.sent += 1
                await _drain(ws, tally)
                await asyncio.sleep(max(0.0, 1 / RATE - (time.monotonic() - started)))
            if ws.closed or not await _probe(ws, tally):
                code = ws.close_code
                if not ws.closed:
                    tally.wedged += 1
                    await ws.close()
                tally.closes[str(code)] += 1
                try:  # a customer's socket opens again on its case; an advisor logs in again
                    if not shared:
                        await http.close()
                        http = await _advisor_session(base, who)
                    ws = await http.ws_connect("/ws", origin=base, max_msg_size=0)
                except (RuntimeError, aiohttp.ClientError):
                    tally.reopen_failures += 1
                    return
        await ws.close()
    finally:
        if not shared:
            await http.close()


async def _drain(ws: aiohttp.ClientWebSocketResponse, tally: Tally) -> None:
    """Read whatever the server has answered so far (without waiting)."""
    while True:
        try:
            frame = await ws.receive(timeout=0.001)
        except TimeoutError:
            return
        if frame.type != aiohttp.WSMsgType.TEXT:
            return
        data = json.loads(frame.data)
        tally.replies[data.get("code") or data.get("type", "?")] += 1


async def _probe(ws: aiohttp.ClientWebSocketResponse, tally: Tally) -> bool:
    """Whether the socket answers a ping with a pong within PROBE_TIMEOUT."""
    tally.probes += 1
    await asyncio.sleep(2.0)  # let the bucket refill: the ping must not be rate-limited
    try:
        await ws.send_str('{"type":"ping"}')
    except (ConnectionResetError, aiohttp.ClientError):
        return False
    deadline = time.monotonic() + PROBE_TIMEOUT
    while time.monotonic() < deadline:
        try:
            frame = await ws.receive(timeout=deadline - time.monotonic())
        except TimeoutError:
            return False
        if frame.type != aiohttp.WSMsgType.TEXT:
            return False
        data = json.loads(frame.data)
        if data.get("type") == "pong":
            return True
        tally.replies[data.get("code") or data.get("type", "?")] += 1
    return False


async def _sample_rss(
    server: Server, tally: Tally, started: float, samples: list[tuple[float, int, int]]
) -> None:
    """The server's RSS every 10 s while the frames are sent."""
    while server.proc.poll() is None:
        samples.append((time.monotonic() - started, tally.sent, _rss_kib(server.proc.pid)))
        await asyncio.sleep(10)


def _growth_after(samples: list[tuple[float, int, int]], frames: int, rss_end: int) -> int | None:
    base = next((rss for _, sent, rss in samples if sent >= frames), None)
    return None if base is None or not rss_end else rss_end - base


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fuzz-ws-") as tmp:
        server = Server(Path(tmp))
        try:
            await server.wait_healthy()
            rss_before = _rss_kib(server.proc.pid)
            sockets = [("customer", i) for i in range(args.customers)] + [
                ("advisor", i) for i in range(args.advisors)
            ]
            quota = -(-args.frames // len(sockets))
            tally = Tally()
            frames = Frames(args.seed)
            started = time.monotonic()
            samples: list[tuple[float, int, int]] = []  # (seconds, frames sent, RSS KiB)
            sampler = asyncio.create_task(_sample_rss(server, tally, started, samples))
            customers = CustomerSessions(server.base)
            try:
                results = await asyncio.gather(
                    *(
                        _fuzz_socket(server.base, role, who, frames, quota, tally, customers)
                        for role, who in sockets
                    ),
                    return_exceptions=True,
                )
            finally:
                await customers.close()
                sampler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampler
            elapsed = time.monotonic() - started
            await asyncio.sleep(5)
            crashed = server.proc.poll() is not None
            rss_after = 0 if crashed else _rss_kib(server.proc.pid)
        finally:
            code = server.stop()
        log = server.log.read_text(errors="replace")
    failures = [repr(r) for r in results if isinstance(r, BaseException)]
    return {
        "bench": "fuzz_ws",
        "frames": tally.sent,
        "sockets": {"customer": args.customers, "advisor": args.advisors},
        "frame_kinds": dict(frames.kinds),
        "seconds": round(elapsed, 1),
        "replies": dict(tally.replies.most_common()),
        "tracebacks": log.count("Traceback (most recent call last)"),
        "error_lines": sum(
            1 for line in log.splitlines() if " ERROR " in line or '"ERROR"' in line
        ),
        "crashed": crashed,
        "exit_code_after_sigterm": code,
        "wedged": tally.wedged,
        "probes": tally.probes,
        "closed_by_server": dict(tally.closes),
        "reopen_failures": tally.reopen_failures,
        "client_failures": failures[:5],
        "rss_kib": {
            "before": rss_before,
            "after": rss_after,
            "growth": rss_after - rss_before,
            # Once every socket is open and a quarter of the frames are sent, the sessions'
            # own state is there: what grows after that is what the frames leave behind.
            "growth_after_first_quarter": _growth_after(samples, tally.sent // 4, rss_after),
            "samples": [{"s": round(t), "frames": f, "rss": r} for t, f, r in samples],
        },
        "load": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000)
    # Sockets: 4 on each of the 6 demo customers' cases (the most the server allows a case).
    parser.add_argument("--customers", type=int, default=24)
    parser.add_argument("--advisors", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args)), indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
