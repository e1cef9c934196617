"""The verification tap: the customer's latest decoded frame, as RGB, at a bounded rate.

Latest-only by construction: between two reads the tap never holds more than the one frame the
call keeps, so a slow consumer drops frames instead of queueing them. Conversion to RGB is CPU
work and runs in a thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from av import VideoFrame


@dataclass(frozen=True, slots=True)
class TappedFrame:
    """One frame for analysis: monotonic time of capture by the tap, and RGB pixels."""

    t: float
    rgb: npt.NDArray[np.uint8]


def _to_rgb(frame: VideoFrame, max_width: int) -> npt.NDArray[np.uint8]:
    if frame.width > max_width:
        height = round(frame.height * max_width / frame.width) // 2 * 2
        frame = frame.reformat(width=max_width, height=height)
    return np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)


async def tap_or_idle(
    latest: Callable[[], VideoFrame | None],
    rate: float | Callable[[], float],
    *,
    max_width: int = 640,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[TappedFrame | None]:
    """Yield each new frame from ``latest()`` at most ``rate`` times a second, or None for a
    period without a new frame (a consumer with timeouts notices that video stopped).

    ``rate`` may be a function, read before every frame: the consumer can ask for the camera's
    full rate for a while (verification does during a blink). A frame already yielded (the same
    object) is skipped; the consumer's own processing time counts against the period, so a
    slow consumer lowers the rate instead of building a backlog.
    """
    last: VideoFrame | None = None
    while True:
        period = 1.0 / (rate() if callable(rate) else rate)
        started = clock()
        frame = latest()
        if frame is not None and frame is not last:
            last = frame
            rgb = await asyncio.to_thread(_to_rgb, frame, max_width)
            yield TappedFrame(started, rgb)
        else:
            yield None
        await asyncio.sleep(max(0.0, period - (clock() - started)))
