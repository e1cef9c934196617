"""Loopback aiortc clients standing for the customer's and the advisor's browsers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from fractions import Fraction

import numpy as np
from aiortc import (
    AudioStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame

from media.ice import keep_loopback_candidates, loopback_gathering

RGB = tuple[int, int, int]
RED: RGB = (200, 40, 40)
BLUE: RGB = (40, 40, 200)
GREEN: RGB = (40, 200, 40)


FPS = 30
VIDEO_TIME_BASE = Fraction(1, 90_000)


class ColourTrack(VideoStreamTrack):
    """A small solid-colour video at 30 fps, timestamped by the wall clock.

    :meth:`pause` stops sending (as a network drop does): after :meth:`resume` the timestamps
    jump by the pause, and no frames are sent to catch up.
    """

    def __init__(self, rgb: RGB, width: int = 160, height: int = 120) -> None:
        super().__init__()
        self._pixels = np.full((height, width, 3), rgb, dtype=np.uint8)
        self._start: float | None = None
        self._index = 0
        self._running = asyncio.Event()
        self._running.set()

    def pause(self) -> None:
        """Send nothing until :meth:`resume`."""
        self._running.clear()

    def resume(self) -> None:
        """Send again, on the same clock."""
        self._running.set()

    async def recv(self) -> VideoFrame:
        await self._running.wait()
        now = time.monotonic()
        if self._start is None:
            self._start = now
        self._index = max(self._index + 1, int((now - self._start) * FPS))
        await asyncio.sleep(max(0.0, self._start + self._index / FPS - now))
        frame = VideoFrame.from_ndarray(self._pixels, format="rgb24")
        frame.pts, frame.time_base = self._index * 90_000 // FPS, VIDEO_TIME_BASE
        return frame


def mean_rgb(frame: VideoFrame) -> RGB:
    """The mean colour of a frame."""
    mean = frame.to_ndarray(format="rgb24").reshape(-1, 3).mean(axis=0)
    return (int(mean[0]), int(mean[1]), int(mean[2]))


def close_to(actual: RGB, expected: RGB, tolerance: int = 25) -> bool:
    """Whether two colours match within ``tolerance`` per channel (VP8 and YUV are lossy)."""
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


class Sink:
    """Consumes one received track, counting frames and keeping the latest."""

    def __init__(self, track: MediaStreamTrack, flowing: asyncio.Event) -> None:
        self.count = 0
        self.flowing = flowing
        self.latest: VideoFrame | AudioFrame | None = None
        self._changed = asyncio.Event()
        self.task = asyncio.create_task(self._run(track))

    async def _run(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if isinstance(frame, VideoFrame | AudioFrame):
                    self.latest = frame
                self.count += 1
                self.flowing.set()
                self._changed.set()
                self._changed = asyncio.Event()

    async def wait_for_colour(self, rgb: RGB) -> None:
        """Wait until the latest frame has colour ``rgb``."""
        while not (isinstance(self.latest, VideoFrame) and close_to(mean_rgb(self.latest), rgb)):
            await self._changed.wait()


class ClientPeer:
    """An aiortc peer that sends a coloured video and a silent audio track, and receives both."""

    def __init__(self, rgb: RGB, size: tuple[int, int] = (160, 120)) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTrack(AudioStreamTrack())
        self.video = ColourTrack(rgb, *size)
        self.pc.addTrack(self.video)
        self.sinks: dict[str, Sink] = {}
        self._flowing = {"audio": asyncio.Event(), "video": asyncio.Event()}
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self.sinks[track.kind] = Sink(track, self._flowing[track.kind])

    async def offer(self) -> str:
        """A complete (gathered) offer with loopback candidates only."""
        offer = await self.pc.createOffer()
        with loopback_gathering():
            await self.pc.setLocalDescription(offer)
        return keep_loopback_candidates(self.pc.localDescription.sdp)

    async def accept(self, answer_sdp: str) -> None:
        """Apply the server's answer (non-loopback candidates dropped)."""
        answer = RTCSessionDescription(sdp=keep_loopback_candidates(answer_sdp), type="answer")
        await self.pc.setRemoteDescription(answer)

    async def received(self, kind: str) -> Sink:
        """The sink of the received ``kind`` track, once frames arrive."""
        await self._flowing[kind].wait()
        return self.sinks[kind]

    async def close(self) -> None:
        """Close the peer connection and its sinks."""
        await self.pc.close()
        for sink in self.sinks.values():
            sink.task.cancel()
        await asyncio.gather(*(s.task for s in self.sinks.values()), return_exceptions=True)
