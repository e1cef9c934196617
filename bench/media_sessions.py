"""Benchmark: N simultaneous customer↔advisor video sessions through the media server.

The server (``bench/_media_server.py``: media.CallManager behind a minimal aiohttp app) runs in
its own process, so its CPU (user + system, all threads) is measured apart from the clients
(``bench/_media_clients.py``, two sessions per process). Every session sends 640×480 30 fps
moving VP8 video and a tone both ways; frame rates are measured at the receiving clients. Only
127.0.0.1 is used (loopback-only ICE); wrap with ``scripts/loopback-only.sh`` as root.

Prints one JSON object on stdout. Usage: ``python bench/media_sessions.py --sessions 1 2 4``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import aiortc
import av
import psutil

logger = logging.getLogger("bench.media_sessions")

HERE = Path(__file__).resolve().parent
SESSIONS_PER_CLIENT = 2
START_TIMEOUT = 20.0
CONNECT_TIMEOUT = 60.0
WARMUP_SECONDS = 3.0
SAMPLE_PERIOD = 0.5


async def spawn(script: str, *args: str) -> asyncio.subprocess.Process:
    """Start a helper script of this folder with this interpreter."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / script),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


async def read_json(proc: asyncio.subprocess.Process, wait_seconds: float) -> dict[str, Any]:
    """The next JSON line a helper prints (bounded wait)."""
    if proc.stdout is None:
        raise RuntimeError("helper started without a stdout pipe")
    line = await asyncio.wait_for(proc.stdout.readline(), wait_seconds)
    if not line:
        raise RuntimeError(f"helper {proc.pid} exited with {await proc.wait()}")
    result: dict[str, Any] = json.loads(line)
    return result


async def stop(proc: asyncio.subprocess.Process) -> None:
    """Terminate a helper, then kill it if it does not exit in time."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), 15)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all processes, all cores)."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def cpu_seconds(procs: list[psutil.Process]) -> float:
    """User + system CPU seconds of these processes."""
    total = 0.0
    for proc in procs:
        times = proc.cpu_times()
        total += times.user + times.system
    return total


class RssSampler:
    """Samples a process's resident memory in the background (peak and last)."""

    def __init__(self, proc: psutil.Process) -> None:
        self._proc = proc
        self.peak = self.last = 0
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        with contextlib.suppress(psutil.Error):
            while True:
                self.sample()
                await asyncio.sleep(SAMPLE_PERIOD)

    def sample(self) -> None:
        """Take one sample now."""
        self.last = self._proc.memory_info().rss
        self.peak = max(self.peak, self.last)

    async def close(self) -> None:
        """Stop sampling."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def server_stats(port: int) -> dict[str, Any]:
    """The server's per-call frame counters."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/stats") as response,
    ):
        result: dict[str, Any] = await response.json()
        return result


def forwarded(stats: dict[str, Any], direction: str) -> int:
    """Video frames the server handed to its encoders in one direction, all calls."""
    return sum(call[direction]["video"] for call in stats.values())


def received(stats: dict[str, Any], side: str) -> int:
    """Video frames the server decoded from one side, all calls."""
    return sum(call["received"][side]["video"] for call in stats.values())


async def start_clients(n: int, port: int, seconds: float) -> list[asyncio.subprocess.Process]:
    """Client processes, two sessions each."""
    ids = [f"bench-{i}" for i in range(n)]
    groups = [ids[i : i + SESSIONS_PER_CLIENT] for i in range(0, n, SESSIONS_PER_CLIENT)]
    common = ["--port", str(port), "--seconds", str(seconds)]
    return [await spawn("_media_clients.py", *common, "--calls", *group) for group in groups]


async def go(client: asyncio.subprocess.Process) -> None:
    """Tell a connected client to start its measurement window."""
    if client.stdin is None:
        raise RuntimeError("client started without a stdin pipe")
    client.stdin.write(b"go\n")
    await client.stdin.drain()


async def measure(
    n: int, seconds: float, server: asyncio.subprocess.Process, port: int
) -> dict[str, Any]:
    """Run N sessions against a started server and measure one window."""
    server_proc = psutil.Process(server.pid)
    rss = RssSampler(server_proc)
    clients = await start_clients(n, port, seconds)
    try:
        for client in clients:
            await read_json(client, CONNECT_TIMEOUT)
        await asyncio.sleep(WARMUP_SECONDS)
        client_procs = [psutil.Process(c.pid) for c in clients]
        stats0 = await server_stats(port)
        cpu0, ccpu0 = cpu_seconds([server_proc]), cpu_seconds(client_procs)
        busy0 = machine_busy_seconds()
        started = time.monotonic()
        await asyncio.gather(*(go(client) for client in clients))
        results = [await read_json(c, seconds + CONNECT_TIMEOUT) for c in clients]
        elapsed = time.monotonic() - started
        cpu1, ccpu1 = cpu_seconds([server_proc]), cpu_seconds(client_procs)
        busy = machine_busy_seconds() - busy0
        stats1 = await server_stats(port)
        rss.sample()
    finally:
        await asyncio.gather(*(stop(c) for c in clients))
        await rss.close()
    sessions = [s for r in results for s in r["results"]]
    result = summarise(n, elapsed, cpu1 - cpu0, ccpu1 - ccpu0, sessions, stats0, stats1, rss)
    others = busy - (cpu1 - cpu0) - (ccpu1 - ccpu0)
    result["other_processes_cpu_cores"] = round(max(others, 0.0) / elapsed, 3)
    return result


def summarise(
    n: int,
    elapsed: float,
    server_cpu: float,
    client_cpu: float,
    sessions: list[dict[str, float]],
    stats0: dict[str, Any],
    stats1: dict[str, Any],
    rss: RssSampler,
) -> dict[str, Any]:
    """The JSON figures of one N."""

    def mean(key: str) -> float:
        return round(statistics.fmean(s[key] for s in sessions), 2)

    def server_fps(direction: str) -> float:
        delta = forwarded(stats1, direction) - forwarded(stats0, direction)
        return round(delta / elapsed / n, 2)

    def decoded_fps(side: str) -> float:
        return round((received(stats1, side) - received(stats0, side)) / elapsed / n, 2)

    return {
        "sessions": n,
        "window_seconds": round(elapsed, 2),
        "server_cpu_seconds_per_session_second": round(server_cpu / elapsed / n, 3),
        "server_cpu_cores_total": round(server_cpu / elapsed, 3),
        "clients_cpu_cores_total": round(client_cpu / elapsed, 3),
        "customer_to_advisor_video_fps": mean("customer_to_advisor_video_fps"),
        "advisor_to_customer_video_fps": mean("advisor_to_customer_video_fps"),
        "customer_to_advisor_audio_fps": mean("customer_to_advisor_audio_fps"),
        "advisor_to_customer_audio_fps": mean("advisor_to_customer_audio_fps"),
        "server_forwarded_video_fps": {
            "customer_to_advisor": server_fps("customer_to_advisor"),
            "advisor_to_customer": server_fps("advisor_to_customer"),
        },
        "server_decoded_video_fps": {
            "customer": decoded_fps("customer"),
            "advisor": decoded_fps("advisor"),
        },
        "per_session": sessions,
        "server_rss_mb": {"peak": round(rss.peak / 2**20, 1), "end": round(rss.last / 2**20, 1)},
    }


async def run_n(n: int, seconds: float) -> dict[str, Any]:
    """Start a fresh server process, run N sessions, stop everything."""
    server = await spawn("_media_server.py", "--max-calls", str(n))
    try:
        port = int((await read_json(server, START_TIMEOUT))["port"])
        return await measure(n, seconds, server, port)
    finally:
        await stop(server)


async def run(sessions: list[int], seconds: float) -> dict[str, Any]:
    """Every N in turn."""
    load = psutil.getloadavg()[0]
    results = [await run_n(n, seconds) for n in sessions]
    return {
        "benchmark": "media_sessions",
        "server": "media.CallManager in its own process",
        "forwarding": "decode + re-encode per forwarded stream (aiortc VP8/Opus)",
        "client_video": "640x480 30 fps moving picture, pre-encoded 1 s VP8 loop (~1 Mbit/s)",
        "client_audio": "440 Hz tone, 48 kHz stereo, 20 ms frames",
        "clients": f"{SESSIONS_PER_CLIENT} sessions per client process, separate from the server",
        "machine": {
            "cores_logical": psutil.cpu_count(logical=True),
            "cores_physical": psutil.cpu_count(logical=False),
            "loadavg_1m_at_start": round(load, 2),
            "note": "shared machine: see other_processes_cpu_cores per result",
        },
        "versions": {"aiortc": aiortc.__version__, "av": av.__version__},
        "seconds": seconds,
        "results": results,
    }


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    budget = sum(
        START_TIMEOUT + 2 * CONNECT_TIMEOUT + WARMUP_SECONDS + args.seconds + 30
        for _ in args.sessions
    )
    result = asyncio.run(asyncio.wait_for(run(args.sessions, args.seconds), math.ceil(budget)))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
