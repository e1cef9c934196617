"""FrameSlot and ForwardTrack: bounded, latest-first forwarding with monotonic timestamps."""

from __future__ import annotations

import asyncio
from fractions import Fraction

import pytest
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, VideoFrame

from media.relay import ForwardTrack, FrameSlot


def video(pts: int) -> VideoFrame:
    frame = VideoFrame(16, 16, "yuv420p")
    frame.pts, frame.time_base = pts, Fraction(1, 90_000)
    return frame


def audio(pts: int) -> AudioFrame:
    frame = AudioFrame(format="s16", layout="stereo", samples=960)
    frame.pts, frame.sample_rate, frame.time_base = pts, 48_000, Fraction(1, 48_000)
    return frame


async def test_a_video_slot_keeps_only_the_latest_frame() -> None:
    slot = FrameSlot("video", depth=1)
    frames = [video(i) for i in range(5)]
    for frame in frames:
        slot.publish(frame)
    seq, latest = await slot.next_after(0)
    assert (seq, latest) == (5, frames[-1]) and slot.received == 5 and slot.delivered == 1


async def test_an_audio_slot_keeps_a_short_backlog() -> None:
    slot = FrameSlot("audio", depth=3)
    frames = [audio(i * 960) for i in range(5)]
    for frame in frames:
        slot.publish(frame)
    got = [(await slot.next_after(seq))[1] for seq in (0, 3, 4)]
    assert got == frames[2:]


async def test_a_waiting_forward_track_gets_the_next_frame_and_ends_on_close() -> None:
    slot = FrameSlot("video", depth=1)
    track = ForwardTrack(slot)
    waiting = asyncio.create_task(track.recv())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    slot.publish(video(123))
    assert isinstance(await waiting, VideoFrame)
    waiting = asyncio.create_task(track.recv())
    await asyncio.sleep(0)
    slot.close()
    with pytest.raises(MediaStreamError):
        await waiting


async def test_timestamps_stay_monotonic_when_the_source_changes() -> None:
    slot = FrameSlot("audio", depth=5)
    track = ForwardTrack(slot)
    slot.publish(audio(500_000))
    slot.publish(audio(0))  # a new source (page reload) starts its clock again
    first, second = await track.recv(), await track.recv()
    assert (first.pts, second.pts) == (0, 960)

    vslot = FrameSlot("video", depth=1)
    vtrack = ForwardTrack(vslot)
    pts: list[int] = []
    for source_pts in (900_000, 0, 0):
        vslot.publish(video(source_pts))
        stamped = (await vtrack.recv()).pts
        assert stamped is not None
        pts.append(stamped)
    assert pts == sorted(pts) and len(set(pts)) == 3


async def test_clear_hides_a_stale_frame() -> None:
    slot = FrameSlot("video", depth=1)
    slot.publish(video(0))
    assert slot.latest is not None
    slot.clear()
    assert slot.latest is None
