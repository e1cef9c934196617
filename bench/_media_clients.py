"""The client side of ``bench/media_sessions.py``: customer and advisor aiortc peers.

For every call id given, a customer peer and an advisor peer send a 640×480 30 fps moving
picture and a 440 Hz tone to the media server and receive each other's media through it. The
video is a one-second VP8 loop encoded once at start-up and then sent as packets, so that the
clients' CPU (on the same machine) is spent decoding what they receive, not encoding.

Protocol on stdout/stdin (one JSON object per line): ``{"connected": …}`` once media flows
both ways in every call; then, after ``go`` on stdin, it counts received frames for
``--seconds`` and prints ``{"results": […]}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import sys
import time
from fractions import Fraction
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media.ice import enable_loopback_ice, keep_loopback_candidates, loopback_gathering

logger = logging.getLogger("bench.media_clients")

WIDTH, HEIGHT, FPS = 640, 480, 30
VIDEO_TIME_BASE = Fraction(1, 90_000)
AUDIO_RATE, AUDIO_SAMPLES = 48_000, 960
CONNECT_TIMEOUT = 30.0


def moving_picture(index: int, phase: int) -> np.ndarray:
    """A 640×480 RGB frame: a gradient that scrolls and a box that moves (cheap numpy)."""
    x = (np.arange(WIDTH, dtype=np.uint16) + 8 * index + phase) % 256
    frame = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
    frame[:, :, 0] = x.astype(np.uint8)
    frame[:, :, 1] = (np.arange(HEIGHT, dtype=np.uint16)[:, None] * 255 // HEIGHT).astype(np.uint8)
    frame[:, :, 2] = 128
    left = (20 * index) % (WIDTH - 120)
    frame[180:300, left : left + 120] = (255, 255, 255)
    return frame


def encode_loop(phase: int) -> list[bytes]:
    """One second of VP8 (keyframe first) so that the loop can repeat seamlessly."""
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    codec.time_base = Fraction(1, FPS)
    codec.framerate = Fraction(FPS, 1)
    codec.bit_rate = 1_000_000
    codec.gop_size = FPS
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    packets: list[bytes] = []
    for index in range(FPS):
        frame = av.VideoFrame.from_ndarray(moving_picture(index, phase), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = index
        packets += [bytes(p) for p in codec.encode(frame)]
    packets += [bytes(p) for p in codec.encode(None)]
    return packets[:FPS]


class _Paced(MediaStreamTrack):
    """A track that hands out item ``n`` at ``start + n * period``."""

    def __init__(self, period: float) -> None:
        super().__init__()
        self._period = period
        self._start: float | None = None
        self._index = 0

    async def _tick(self) -> int:
        if self._start is None:
            self._start = time.monotonic()
        index = self._index
        self._index += 1
        delay = self._start + index * self._period - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        return index


class VideoLoopTrack(_Paced):
    """Sends pre-encoded VP8 packets at 30 fps (no encoding in the client)."""

    kind = "video"

    def __init__(self, packets: list[bytes]) -> None:
        super().__init__(1 / FPS)
        self._packets = packets

    async def recv(self) -> av.Packet[Any]:
        index = await self._tick()
        packet = av.Packet(self._packets[index % len(self._packets)])
        packet.pts, packet.time_base = index * 90_000 // FPS, VIDEO_TIME_BASE
        return packet


class ToneTrack(_Paced):
    """A 440 Hz stereo tone in 20 ms frames."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__(AUDIO_SAMPLES / AUDIO_RATE)
        t = np.arange(AUDIO_RATE) / AUDIO_RATE
        mono = (3000 * np.sin(2 * math.pi * 440 * t)).astype(np.int16)
        self._samples = np.repeat(mono, 2).reshape(1, -1)

    async def recv(self) -> av.AudioFrame:
        index = await self._tick()
        start = (index * AUDIO_SAMPLES) % AUDIO_RATE
        chunk = self._samples[:, 2 * start : 2 * (start + AUDIO_SAMPLES)]
        frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
        frame.sample_rate, frame.pts = AUDIO_RATE, index * AUDIO_SAMPLES
        frame.time_base = Fraction(1, AUDIO_RATE)
        return frame


class Peer:
    """One browser stand-in: sends video and audio, counts what it receives."""

    def __init__(self, packets: list[bytes]) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTrack(ToneTrack())
        video = self.pc.addTransceiver(VideoLoopTrack(packets), direction="sendrecv")
        vp8 = [
            c
            for c in RTCRtpSender.getCapabilities("video").codecs
            if c.mimeType in ("video/VP8", "video/rtx")
        ]
        video.setCodecPreferences(vp8)
        self.counts = {"audio": 0, "video": 0}
        self.video_flowing = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", lambda track: self.tasks.append(asyncio.create_task(self._sink(track))))

    async def _sink(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                self.counts[track.kind] += 1
                if track.kind == "video":
                    self.video_flowing.set()

    async def connect(self, http: aiohttp.ClientSession, url: str) -> None:
        """Offer (loopback candidates only) and apply the server's answer."""
        offer = await self.pc.createOffer()
        with loopback_gathering():
            await self.pc.setLocalDescription(offer)
        sdp = keep_loopback_candidates(self.pc.localDescription.sdp)
        async with http.post(url, data=sdp) as response:
            response.raise_for_status()
            answer = keep_loopback_candidates(await response.text())
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    async def close(self) -> None:
        """Close the peer and its sinks."""
        await self.pc.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def open_session(
    http: aiohttp.ClientSession, base: str, call_id: str, loops: list[list[bytes]]
) -> dict[str, Peer]:
    """Connect the customer and the advisor of one call."""
    peers = {"customer": Peer(loops[0]), "advisor": Peer(loops[1])}
    for side, peer in peers.items():
        await peer.connect(http, f"{base}/calls/{call_id}/{side}/offer")
    return peers


async def wait_flowing(sessions: list[dict[str, Peer]]) -> None:
    """Wait until every peer receives video."""
    async with asyncio.timeout(CONNECT_TIMEOUT):
        await asyncio.gather(*(p.video_flowing.wait() for s in sessions for p in s.values()))


def snapshot(sessions: list[dict[str, Peer]]) -> list[dict[str, dict[str, int]]]:
    """Received-frame counters of every peer."""
    return [{side: dict(peer.counts) for side, peer in s.items()} for s in sessions]


def rates(
    before: list[dict[str, dict[str, int]]], after: list[dict[str, dict[str, int]]], seconds: float
) -> list[dict[str, float]]:
    """Frames per second per session and direction (measured at the receiving peer)."""

    def rate(i: int, side: str, kind: str) -> float:
        return round((after[i][side][kind] - before[i][side][kind]) / seconds, 2)

    return [
        {
            "customer_to_advisor_video_fps": rate(i, "advisor", "video"),
            "advisor_to_customer_video_fps": rate(i, "customer", "video"),
            "customer_to_advisor_audio_fps": rate(i, "advisor", "audio"),
            "advisor_to_customer_audio_fps": rate(i, "customer", "audio"),
        }
        for i in range(len(before))
    ]


async def run(port: int, call_ids: list[str], seconds: float) -> None:
    """Connect, report, wait for ``go``, measure, report."""
    enable_loopback_ice()
    loops = [encode_loop(0), encode_loop(128)]
    base = f"http://127.0.0.1:{port}"
    sessions: list[dict[str, Peer]] = []
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as http:
        try:
            for call_id in call_ids:
                sessions.append(await open_session(http, base, call_id, loops))
            await wait_flowing(sessions)
            print(json.dumps({"connected": len(sessions)}), flush=True)
            await loop.run_in_executor(None, sys.stdin.readline)
            before, started = snapshot(sessions), time.monotonic()
            await asyncio.sleep(seconds)
            elapsed = time.monotonic() - started
            print(json.dumps({"results": rates(before, snapshot(sessions), elapsed)}), flush=True)
        finally:
            await asyncio.gather(*(p.close() for s in sessions for p in s.values()))


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--calls", nargs="+", required=True)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(run(args.port, args.calls, args.seconds))


if __name__ == "__main__":
    main()
