"""The verification tap reads the customer's real incoming video, latest frame only."""

from __future__ import annotations

import asyncio
import itertools

import numpy as np
from av import VideoFrame

from media.call import CallManager
from media.tap import tap_or_idle
from tests.media.peers import RED, ClientPeer, close_to
from tests.media.test_call import connected_pair


async def test_tap_yields_the_customers_video_as_rgb(
    manager: CallManager, clients: list[ClientPeer]
) -> None:
    call, _, _ = await connected_pair(manager, clients, [])
    frames = []
    async for tapped in tap_or_idle(call.latest_customer_frame, rate=10):
        if tapped is not None:
            frames.append(tapped)
        if len(frames) == 5:
            break
    assert all(f.rgb.dtype == np.uint8 and f.rgb.shape[2] == 3 for f in frames)
    mean = frames[-1].rgb.reshape(-1, 3).mean(axis=0)
    assert close_to((int(mean[0]), int(mean[1]), int(mean[2])), RED)
    times = [f.t for f in frames]
    assert min(b - a for a, b in itertools.pairwise(times)) >= 0.09  # ≤ 10 per second


async def test_tap_skips_a_frame_it_has_already_given_and_downscales() -> None:
    big = VideoFrame.from_ndarray(np.zeros((720, 1280, 3), dtype=np.uint8), format="rgb24")
    current: list[VideoFrame | None] = [None]
    got = []

    async def consume() -> None:
        async for tapped in tap_or_idle(lambda: current[0], rate=50):
            if tapped is not None:
                got.append(tapped)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    assert got == []  # nothing until video flows
    current[0] = big
    await asyncio.sleep(0.2)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert len(got) == 1  # the same frame is analysed once
    assert got[0].rgb.shape == (360, 640, 3)
