"""Benchmark: the server's CPU per recorded 640×480 30 fps video stream.

For each mode a fresh server process runs ``media.call.CallManager`` (loopback-only ICE) and
takes offers over its stdin/stdout (one JSON object per line): ``off`` (no recording), ``ours``
(``MediaConfig.recording_dir``: encoded frames muxed without decoding) and ``stock-mp4`` /
``stock-webm`` (aiortc's ``MediaRecorder`` on every received video track, through a
``MediaRelay`` next to the forwarding pump; its encoder runs on the event loop). This script
plays both sides of N calls with aiortc peers (``bench/_media_clients.py``: a pre-encoded VP8
640×480 30 fps loop and a tone, so the clients do not encode) and measures the server process's
user + system CPU over a window that starts once media flows. Per mode:
``cores_per_video_stream = (cpu cores with the mode − cpu cores of "off") / (2 N)``.
For ``ours`` it also reports ``writer_thread_cores_per_video_stream``: the CPU time of the
recorder's writer threads (``time.thread_time``) over their life, per party (one video stream
and its audio) — measured inside the threads, so the machine's other load does not blur it.

Prints one JSON object. Usage: ``python bench/recording.py --calls 1 --seconds 20``; wrap it with
``scripts/loopback-only.sh`` (only 127.0.0.1 is used).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiortc
import av
import psutil
from aiortc import RTCSessionDescription
from aiortc.contrib.media import MediaRecorder, MediaRelay
from aiortc.mediastreams import MediaStreamTrack

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from _media_clients import Peer, encode_loop  # noqa: E402

from media.call import CallManager, CallMedia  # noqa: E402
from media.config import MediaConfig  # noqa: E402
from media.ice import enable_loopback_ice, keep_loopback_candidates, loopback_gathering  # noqa: E402

logger = logging.getLogger("bench.recording")

MODES = ("off", "ours", "stock-mp4", "stock-webm")
SIDES = ("customer", "advisor")
CONNECT_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
WARMUP_SECONDS = 3.0


# ---- the server process -----------------------------------------------------------------------


class Counted(MediaStreamTrack):
    """Counts the frames a consumer takes from ``source``."""

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = source.kind
        self._source = source
        self.frames = 0

    async def recv(self) -> Any:
        frame = await self._source.recv()
        self.frames += 1
        return frame


class StockRecorders:
    """aiortc's MediaRecorder on every received video track (the stock way to record)."""

    def __init__(self, spool: Path, extension: str) -> None:
        self._spool = spool
        self._extension = extension
        self._relay = MediaRelay()
        self.recorders: list[tuple[MediaRecorder, Counted]] = []
        self._starts: set[asyncio.Future[None]] = set()

    def install(self) -> None:
        """Wrap ``CallMedia._on_track`` in this (benchmark) process."""
        original = CallMedia._on_track
        stock = self

        def on_track(call: CallMedia, leg: Any, track: MediaStreamTrack) -> None:
            if track.kind == "video":
                stock.record(f"{call.call_id}-{leg.side}", track)
                track = stock._relay.subscribe(track, buffered=True)
            original(call, leg, track)

        CallMedia._on_track = on_track  # type: ignore[method-assign]

    def record(self, name: str, track: MediaStreamTrack) -> None:
        """Start a MediaRecorder on ``track`` (latest frame only: it may fall behind)."""
        recorder = MediaRecorder(str(self._spool / f"{name}.{self._extension}"))
        counted = Counted(self._relay.subscribe(track, buffered=False))
        recorder.addTrack(counted)
        self.recorders.append((recorder, counted))
        start = asyncio.ensure_future(recorder.start())
        self._starts.add(start)
        start.add_done_callback(self._starts.discard)

    async def stop(self) -> int:
        """Stop every recorder; the frames they took."""
        await asyncio.gather(*(recorder.stop() for recorder, _ in self.recorders))
        return sum(counted.frames for _, counted in self.recorders)


async def read_line() -> dict[str, Any]:
    """One JSON command from stdin."""
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if not line:
        raise EOFError("the benchmark went away")
    result: dict[str, Any] = json.loads(line)
    return result


def reply(obj: dict[str, Any]) -> None:
    """One JSON line on stdout."""
    print(json.dumps(obj), flush=True)


async def serve(mode: str, spool: Path) -> None:
    """Answer offers until ``close``; then report what was recorded and exit."""
    enable_loopback_ice()
    recording = spool if mode == "ours" else None
    manager = CallManager(
        MediaConfig(ice_loopback_only=True, max_calls=64, recording_dir=recording)
    )
    stock = StockRecorders(spool, mode.removeprefix("stock-")) if mode.startswith("stock") else None
    if stock is not None:
        stock.install()
    reply({"ready": os.getpid()})
    while True:
        command = await read_line()
        if command["cmd"] == "recorded":
            reply({"video_frames": recorded_so_far(manager, stock)})
        elif command["cmd"] == "offer":
            call = manager.get(command["call"]) or manager.open(command["call"])
            reply({"sdp": await call.answer(command["side"], command["sdp"])})
        elif command["cmd"] == "close":
            received = sum(
                manager.get(c).stats()["received"][s]["video"]  # type: ignore[union-attr]
                for c in manager
                for s in SIDES
            )
            stock_frames = await stock.stop() if stock is not None else 0
            open_calls = [c for c in (manager.get(i) for i in manager) if c is not None]
            recorded = await manager.close_all()
            result = summary(received, stock_frames, recorded)
            loads = [load for c in open_calls if (load := c.recorder_load()) is not None]
            if loads:  # measured inside the writer threads: independent of the machine's load
                result["writer_thread_cores_per_video_stream"] = round(
                    sum(loads) / (len(SIDES) * len(open_calls)), 4
                )
            reply(result)
            return


def recorded_so_far(manager: CallManager, stock: StockRecorders | None) -> int:
    """Video frames recorded so far by every call."""
    if stock is not None:
        return sum(counted.frames for _, counted in stock.recorders)
    calls = [manager.get(call_id) for call_id in manager]
    return sum(
        side["video_frames"]
        for call in calls
        if call is not None
        for side in call.recording_stats().values()
    )


def summary(received: int, stock_frames: int, recorded: dict[str, list[Any]]) -> dict[str, Any]:
    """The recorded/dropped frame counts of one run."""
    files = [f for call in recorded.values() for f in call]
    result: dict[str, Any] = {"video_frames_received": received}
    if files:
        result |= {
            "files": len(files),
            "video_frames_recorded": sum(f.video_frames for f in files),
            "audio_frames_recorded": sum(f.audio_frames for f in files),
            "frames_dropped": sum(f.dropped_frames for f in files),
            "bytes": sum(f.size for f in files),
        }
    if stock_frames:
        result |= {
            "video_frames_recorded": stock_frames,
            "frames_dropped": max(received - stock_frames, 0),
        }
    return result


# ---- the benchmark: clients and measuring -----------------------------------------------------


class Server:
    """A server process of one mode and its line protocol."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lock = asyncio.Lock()

    @classmethod
    async def start(cls, mode: str, spool: Path) -> Server:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(HERE / Path(__file__).name),
            "--serve",
            mode,
            "--spool",
            str(spool),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        server = cls(proc)
        await server.read()
        return server

    async def ask(self, command: dict[str, Any], wait_seconds: float) -> dict[str, Any]:
        """Send one command, read its reply."""
        async with self.lock:
            if self.proc.stdin is None:
                raise RuntimeError("no stdin pipe")
            self.proc.stdin.write(json.dumps(command).encode() + b"\n")
            await self.proc.stdin.drain()
            return await asyncio.wait_for(self.read(), wait_seconds)

    async def read(self) -> dict[str, Any]:
        if self.proc.stdout is None:
            raise RuntimeError("no stdout pipe")
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the server exited with {await self.proc.wait()}")
        result: dict[str, Any] = json.loads(line)
        return result


async def connect(server: Server, call: str, side: str, peer: Peer) -> None:
    """Offer (loopback candidates only) and apply the server's answer."""
    offer = await peer.pc.createOffer()
    with loopback_gathering():
        await peer.pc.setLocalDescription(offer)
    sdp = keep_loopback_candidates(peer.pc.localDescription.sdp)
    answer = await server.ask({"cmd": "offer", "call": call, "side": side, "sdp": sdp}, 30)
    description = RTCSessionDescription(keep_loopback_candidates(answer["sdp"]), "answer")
    await peer.pc.setRemoteDescription(description)


def cpu_seconds(proc: psutil.Process) -> float:
    """User + system CPU seconds of a process."""
    times = proc.cpu_times()
    return float(times.user + times.system)


async def run_mode(
    mode: str, calls: int, seconds: float, loops: list[list[bytes]], spool: Path
) -> dict[str, Any]:
    """One server process, N calls, one measured window."""
    server = await Server.start(mode, spool)
    peers = [Peer(loops[i % 2]) for i in range(2 * calls)]
    try:
        for index in range(calls):
            for offset, side in enumerate(SIDES):
                await connect(server, f"call-{index}", side, peers[2 * index + offset])
        async with asyncio.timeout(CONNECT_TIMEOUT):
            await asyncio.gather(*(peer.video_flowing.wait() for peer in peers))
        await asyncio.sleep(WARMUP_SECONDS)
        proc = psutil.Process(server.proc.pid)
        recorded_before = (await server.ask({"cmd": "recorded"}, 10))["video_frames"]
        started, cpu_before = time.monotonic(), cpu_seconds(proc)
        received_before = sum(p.counts["video"] for p in peers)
        await asyncio.sleep(seconds)
        elapsed, cpu = time.monotonic() - started, cpu_seconds(proc) - cpu_before
        forwarded_fps = (sum(p.counts["video"] for p in peers) - received_before) / elapsed
        recorded = (await server.ask({"cmd": "recorded"}, 10))["video_frames"] - recorded_before
        result = await server.ask({"cmd": "close"}, STOP_TIMEOUT)
        code = await asyncio.wait_for(server.proc.wait(), STOP_TIMEOUT)
    finally:
        await asyncio.gather(*(peer.close() for peer in peers))
        if server.proc.returncode is None:
            server.proc.kill()
            await server.proc.wait()
    return {
        "mode": mode,
        "server_cpu_cores": round(cpu / elapsed, 3),
        "forwarded_video_fps_per_stream": round(forwarded_fps / (2 * calls), 1),
        "recorded_video_fps_per_stream": round(recorded / elapsed / (2 * calls), 1),
        "server_exit_code": code,
        **result,
    }


def normalised(result: dict[str, Any], baseline: dict[str, Any], streams: int) -> float | None:
    """Recording cost per 30 fps stream when a recorder slows the forwarding down: the baseline
    is scaled to the frames actually forwarded, the rest is divided by the frames recorded."""
    fps = result["recorded_video_fps_per_stream"]
    if not fps:
        return None
    scale = result["forwarded_video_fps_per_stream"] / baseline["forwarded_video_fps_per_stream"]
    extra = result["server_cpu_cores"] - baseline["server_cpu_cores"] * scale
    return round(extra / streams * 30 / fps, 3)


async def run(modes: list[str], calls: int, seconds: float) -> dict[str, Any]:
    """Every mode in turn (``off`` first, as the baseline)."""
    enable_loopback_ice()
    loops = [encode_loop(0), encode_loop(128)]
    load = psutil.getloadavg()[0]
    results = []
    with tempfile.TemporaryDirectory(prefix="cloudbranch-rec-bench-") as tmp:
        for mode in ["off", *[m for m in modes if m != "off"]]:
            spool = Path(tmp) / mode
            spool.mkdir()
            results.append(await run_mode(mode, calls, seconds, loops, spool))
    baseline = results[0]
    streams = 2 * calls
    for result in results[1:]:
        extra = result["server_cpu_cores"] - baseline["server_cpu_cores"]
        result["cores_per_video_stream"] = round(extra / streams, 3)
        result["cores_per_30fps_video_stream_normalised"] = normalised(result, baseline, streams)
    return {
        "benchmark": "recording",
        "calls": calls,
        "video_streams": streams,
        "seconds": seconds,
        "client_video": "640x480 30 fps, pre-encoded 1 s VP8 loop (~1 Mbit/s); 48 kHz tone",
        "cores_per_video_stream": "(server cpu cores with the mode - without) / video streams",
        "stock": "aiortc MediaRecorder per video track (video only) via MediaRelay, latest frame",
        "cores_per_30fps_video_stream_normalised": (
            "(server cores - baseline cores scaled to the frames forwarded) / streams, per 30 "
            "recorded frames a second (the stock recorder encodes on the event loop and slows "
            "the forwarding down, which hides its cost in the plain figure)"
        ),
        "machine": {
            "cores_logical": psutil.cpu_count(logical=True),
            "loadavg_1m_at_start": round(load, 2),
        },
        "versions": {"aiortc": aiortc.__version__, "av": av.__version__},
        "results": results,
    }


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=["ours", "stock-mp4"])
    parser.add_argument("--serve", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--spool", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.serve:
        asyncio.run(serve(args.serve, args.spool))
        return
    if args.calls < 1 or args.seconds <= 0:
        parser.error("calls must be ≥ 1 and seconds > 0")
    print(json.dumps(asyncio.run(run(args.modes, args.calls, args.seconds)), indent=2))


if __name__ == "__main__":
    main()
