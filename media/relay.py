"""Forwarding frames between the two sides of a call without unbounded buffers.

A :class:`FrameSlot` holds the last few frames of one (side, kind); a pump task (:func:`pump`)
drains a remote track into it so that aiortc's receive queue never grows, whether or not the
other side is connected. A :class:`ForwardTrack` is the outgoing track of the other side's
peer connection: it waits for the next frame in the slot, skips what it fell behind on, and
rewrites timestamps so that they stay monotonic when the source track is replaced (reload).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from fractions import Fraction

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, VideoFrame

logger = logging.getLogger(__name__)

Frame = AudioFrame | VideoFrame
VIDEO_CLOCK = 90_000
VIDEO_TIME_BASE = Fraction(1, VIDEO_CLOCK)
AUDIO_DEPTH = 5  # 100 ms of 20 ms audio frames: absorbs an encoder hiccup without a gap
VIDEO_DEPTH = 1  # latest frame only: a late video frame is worth nothing


class FrameSlot:
    """The last ``depth`` frames of one media source, numbered; waiters are woken per frame."""

    def __init__(self, kind: str, depth: int) -> None:
        self.kind = kind
        self._frames: deque[tuple[int, Frame]] = deque(maxlen=depth)
        self._seq = 0
        self._changed = asyncio.Event()
        self._closed = False
        self.received = 0
        self.delivered = 0

    @property
    def latest(self) -> Frame | None:
        """The newest frame of the live source, or None when no source is live."""
        return self._frames[-1][1] if self._frames else None

    def publish(self, frame: Frame) -> None:
        """Store a new frame (dropping the oldest beyond ``depth``) and wake the waiters."""
        self._seq += 1
        self.received += 1
        self._frames.append((self._seq, frame))
        self._wake()

    def clear(self) -> None:
        """Forget the frames of a source that ended (a tap must not see a stale picture)."""
        self._frames.clear()

    def close(self) -> None:
        """Wake every waiter with ``MediaStreamError``; the slot takes no more frames."""
        self._closed = True
        self._wake()

    async def next_after(self, seq: int) -> tuple[int, Frame]:
        """The oldest kept frame numbered after ``seq``; waits until there is one."""
        while True:
            if self._closed:
                raise MediaStreamError
            for number, frame in self._frames:
                if number > seq:
                    self.delivered += 1
                    return number, frame
            await self._changed.wait()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


async def pump(track: MediaStreamTrack, slot: FrameSlot) -> None:
    """Drain ``track`` into ``slot`` until the track ends, then clear the slot."""
    try:
        while True:
            frame = await track.recv()
            if isinstance(frame, AudioFrame | VideoFrame):
                slot.publish(frame)
    except MediaStreamError:
        logger.debug("%s source ended", slot.kind)
    finally:
        slot.clear()


class ForwardTrack(MediaStreamTrack):
    """An outgoing track that plays whatever the other side's source currently delivers."""

    def __init__(self, slot: FrameSlot) -> None:
        super().__init__()
        self.kind = slot.kind
        self._slot = slot
        self._seq = 0
        self._start: float | None = None
        self._next_pts = 0

    async def recv(self) -> Frame:
        """The next frame of the source, with a timestamp of this track's own clock."""
        if self.readyState != "live":
            raise MediaStreamError
        self._seq, frame = await self._slot.next_after(self._seq)
        if isinstance(frame, VideoFrame):
            self._stamp_video(frame)
        else:
            self._stamp_audio(frame)
        return frame

    def _stamp_video(self, frame: VideoFrame) -> None:
        now = time.monotonic()
        if self._start is None:
            self._start = now
        pts = max(int((now - self._start) * VIDEO_CLOCK), self._next_pts)
        frame.pts, frame.time_base = pts, VIDEO_TIME_BASE
        self._next_pts = pts + 1

    def _stamp_audio(self, frame: AudioFrame) -> None:
        frame.pts, frame.time_base = self._next_pts, Fraction(1, frame.sample_rate)
        self._next_pts += frame.samples
