"""Recording of calls: real loopback calls through CallManager, then the files as a player sees
them (PyAV demuxes and decodes what the recorder muxed without decoding)."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import queue
import shutil
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest
from playwright.async_api import async_playwright

from media.call import CallManager, CallMedia
from media.config import MediaConfig
from media.errors import InvalidCallId, RecordingError
from media.recorder import (
    CallRecorder,
    RecordedFile,
    SourceClock,
    check_call_id,
    opus_duration_ms,
    recover_spool,
    tap_receiver,
    vp8_keyframe_size,
)
from tests.media.peers import BLUE, GREEN, RED, ClientPeer, close_to, mean_rgb
from tests.media.test_call import join

TIMEOUT = 10
CHROMIUM = Path("/usr/bin/chromium")
PLAY_IN_PAGE = """async () => {
  const video = document.querySelector("video");
  video.muted = true;
  await video.play();
  await new Promise((resolve) => video.addEventListener("ended", resolve, {once: true}));
  return {duration: video.duration, width: video.videoWidth, height: video.videoHeight,
          frames: video.getVideoPlaybackQuality().totalVideoFrames,
          audioBytes: video.webkitAudioDecodedByteCount, error: video.error && video.error.code};
}"""
CUSTOMER_SIZE = (320, 240)
ADVISOR_SIZE = (160, 120)


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def config(spool: Path) -> MediaConfig:
    """The media fixtures' settings, with recording into ``spool``."""
    return MediaConfig(ice_loopback_only=True, max_calls=2, recording_dir=spool)


@dataclass
class Played:
    """What a player finds in a recorded file."""

    sizes: set[tuple[int, int]]
    colours: list[tuple[int, int, int]]
    video_pts_ms: list[int]
    audio_pts_ms: list[int]
    audio_frames: int


def play(path: Path) -> Played:
    """Demux and decode a whole file."""
    played = Played(set(), [], [], [], 0)
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.pts is None:
                continue
            at_ms = int(packet.pts * packet.time_base * 1000)
            if packet.stream.type == "video":
                played.video_pts_ms.append(at_ms)
                for frame in packet.decode():
                    played.sizes.add((frame.width, frame.height))
                    played.colours.append(mean_rgb(frame))
            else:
                played.audio_pts_ms.append(at_ms)
                played.audio_frames += len(packet.decode())
    return played


async def played_off_loop(path: Path) -> Played:
    """:func:`play` in a thread (decoding a file would block the test's loop)."""
    return await asyncio.to_thread(play, path)


def by_side(files: list[RecordedFile]) -> dict[str, RecordedFile]:
    return {recorded.side: recorded for recorded in files}


async def start_call(
    manager: CallManager, clients: list[ClientPeer], customer: ClientPeer
) -> CallMedia:
    """A call with ``customer`` and a blue advisor, media flowing both ways."""
    call = manager.open("call-1")
    advisor = ClientPeer(BLUE, ADVISOR_SIZE)
    clients.extend([customer, advisor])
    await join(call, "customer", customer)
    await join(call, "advisor", advisor)
    async with asyncio.timeout(TIMEOUT):
        await (await advisor.received("video")).wait_for_colour(customer_colour(customer))
        await (await customer.received("video")).wait_for_colour(BLUE)
    return call


def customer_colour(peer: ClientPeer) -> tuple[int, int, int]:
    return tuple(int(c) for c in peer.video._pixels[0, 0])  # type: ignore[return-value]


async def test_a_call_is_recorded_per_side(
    manager: CallManager, clients: list[ClientPeer], spool: Path
) -> None:
    opened = time.monotonic()
    call = await start_call(manager, clients, ClientPeer(RED, CUSTOMER_SIZE))
    await asyncio.sleep(2)
    length_ms = (time.monotonic() - opened) * 1000
    stats = call.recording_stats()
    closed, again = await asyncio.gather(manager.close("call-1"), call.close())
    files = by_side(closed)
    assert again == closed == await call.close()  # idempotent, even while closing
    load = call.recorder_load()  # the writer thread's own CPU, for bench/recording.py
    assert load is not None and 0 < load < 0.5, load
    assert set(files) == {"customer", "advisor"}
    assert stats["customer"]["video_frames"] > 0 and stats["advisor"]["audio_frames"] > 0
    for side, size, colour in (("customer", CUSTOMER_SIZE, RED), ("advisor", ADVISOR_SIZE, BLUE)):
        recorded = files[side]
        data = await asyncio.to_thread(recorded.path.read_bytes)
        assert recorded.path.parent == spool / "call-1" and recorded.path.suffix == ".webm"
        assert recorded.sha256 == hashlib.sha256(data).hexdigest() and recorded.size == len(data)
        assert not recorded.recovered and recorded.started_at.tzinfo is not None
        played = await played_off_loop(recorded.path)
        assert played.sizes == {size}
        assert close_to(played.colours[-1], colour)
        assert played.audio_frames > 20 and played.audio_frames == recorded.audio_frames
        assert len(played.video_pts_ms) == recorded.video_frames > 30
        assert length_ms - 2500 < recorded.duration_ms + recorded.offset_ms < length_ms + 500
        ends = (max(played.video_pts_ms), max(played.audio_pts_ms) + 20)
        assert max(ends) == recorded.duration_ms
    # both files sit on one clock: both parties were there at the same time
    # (the clients' audio falls behind real time on a busy machine: compare the video)
    ends = [f.offset_ms + max((await played_off_loop(f.path)).video_pts_ms) for f in files.values()]
    assert abs(ends[0] - ends[1]) < 300
    assert await asyncio.to_thread(recover_spool, spool) == list(
        files.values()
    )  # finished files come back as they are


async def test_a_reload_continues_the_same_file(
    manager: CallManager, clients: list[ClientPeer]
) -> None:
    customer = ClientPeer(RED, CUSTOMER_SIZE)
    call = await start_call(manager, clients, customer)
    await asyncio.sleep(1)
    reloaded = ClientPeer(GREEN, CUSTOMER_SIZE)
    clients.append(reloaded)
    await customer.close()
    await join(call, "customer", reloaded)
    async with asyncio.timeout(TIMEOUT):
        await (await reloaded.received("video")).wait_for_colour(BLUE)
    await asyncio.sleep(1)
    files = by_side(await call.close())
    assert set(files) == {"customer", "advisor"}
    played = await played_off_loop(files["customer"].path)
    assert any(close_to(c, RED) for c in played.colours)
    assert any(close_to(c, GREEN) for c in played.colours)
    assert all(close_to(c, RED) for c in played.colours[:10])
    assert close_to(played.colours[-1], GREEN)
    for pts in (played.video_pts_ms, played.audio_pts_ms):
        assert all(b > a for a, b in itertools.pairwise(pts))


async def test_a_network_drop_leaves_a_gap_not_a_shift(
    manager: CallManager, clients: list[ClientPeer]
) -> None:
    customer = ClientPeer(RED, CUSTOMER_SIZE)
    opened = time.monotonic()
    call = await start_call(manager, clients, customer)
    await asyncio.sleep(0.5)
    customer.video.pause()
    await asyncio.sleep(1.2)
    customer.video.resume()
    await asyncio.sleep(1)
    last_sent_ms = (time.monotonic() - opened) * 1000
    recorded = by_side(await call.close())["customer"]
    played = await played_off_loop(recorded.path)
    gaps = [b - a for a, b in itertools.pairwise(played.video_pts_ms)]
    assert max(gaps) > 1000  # the pause is a hole in the video …
    # … and what came after it sits where it was sent on the call's clock, not 1.2 s early
    # (give or take the first frame's delivery delay, which anchors the source)
    assert abs(recorded.offset_ms + played.video_pts_ms[-1] - last_sent_ms) < 600


async def test_crash_recovery_finalises_left_files(
    manager: CallManager, clients: list[ClientPeer], tmp_path: Path, spool: Path
) -> None:
    await start_call(manager, clients, ClientPeer(RED, CUSTOMER_SIZE))
    await asyncio.sleep(2.5)
    # the process "dies" now: what is on disk mid-call is all that is left of it
    crashed = tmp_path / "crashed"
    await asyncio.to_thread(shutil.copytree, spool, crashed)
    (crashed / "call-2").mkdir()
    (crashed / "call-2" / "advisor.webm").write_bytes(b"\x1a\x45\xdf\xa3 not a file")
    (crashed / "call-3").mkdir()  # nothing in it: cleaned up

    files = await asyncio.to_thread(recover_spool, crashed)

    assert {(f.call_id, f.side) for f in files} == {("call-1", "customer"), ("call-1", "advisor")}
    for recorded in files:
        assert recorded.recovered and recorded.video_frames > 0 and recorded.duration_ms > 500
        data = await asyncio.to_thread(recorded.path.read_bytes)
        assert recorded.sha256 == hashlib.sha256(data).hexdigest()
        played = await played_off_loop(recorded.path)
        assert len(played.colours) == recorded.video_frames and played.audio_frames > 0
    assert (crashed / "call-2" / "advisor.broken").exists()
    assert not (crashed / "call-3").exists()
    # the recovered files keep their place on the call's clock
    finished = by_side(await manager.close("call-1"))
    assert {f.side: f.offset_ms for f in files} == {s: f.offset_ms for s, f in finished.items()}
    assert {f.started_at for f in files} == {f.started_at for f in finished.values()}


@pytest.mark.e2e
async def test_chromium_plays_the_recording(
    manager: CallManager, clients: list[ClientPeer]
) -> None:
    if not CHROMIUM.exists():  # noqa: ASYNC240 (a stat)
        pytest.skip(f"{CHROMIUM} not found")
    call = await start_call(manager, clients, ClientPeer(RED, CUSTOMER_SIZE))
    await asyncio.sleep(1.5)
    recorded = by_side(await call.close())["customer"]
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-background-networking", "--no-first-run"],
        )
        try:
            page = await browser.new_page()
            await page.goto(recorded.path.as_uri())
            async with asyncio.timeout(TIMEOUT):
                seen = await page.evaluate(PLAY_IN_PAGE)
        finally:
            await browser.close()
    assert seen["error"] is None and (seen["width"], seen["height"]) == CUSTOMER_SIZE
    assert abs(seen["duration"] * 1000 - recorded.duration_ms) < 100
    assert seen["frames"] == recorded.video_frames and seen["audioBytes"] > 0


async def test_an_invalid_call_id_is_refused(manager: CallManager) -> None:
    for call_id in ("../x", "", "a b", "a/b", "é"):
        with pytest.raises(InvalidCallId):
            manager.open(call_id)
    assert len(manager) == 0


# ---- the recorder on its own, with a fake receiver -------------------------------------------


@dataclass
class FakeCodec:
    name: str


@dataclass
class FakeFrame:
    data: bytes
    timestamp: int


class FakeReceiver:
    """Has the private queue aiortc's RTCRtpReceiver has."""

    def __init__(self) -> None:
        self._RTCRtpReceiver__decoder_queue: queue.Queue[Any] = queue.Queue()

    def put(self, codec: str, data: bytes, timestamp: int) -> None:
        item = (FakeCodec(codec), FakeFrame(data, timestamp))
        self._RTCRtpReceiver__decoder_queue.put(item)


def vp8_packets(count: int, size: tuple[int, int] = (64, 48)) -> list[bytes]:
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = *size, "yuv420p"
    codec.time_base, codec.gop_size = Fraction(1, 30), 10
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    packets: list[bytes] = []
    for index in range(count):
        frame = av.VideoFrame(*size, "yuv420p")
        frame.pts = index
        packets += [bytes(p) for p in codec.encode(frame)]
    return packets


def test_vp8_keyframes_and_their_size() -> None:
    packets = vp8_packets(12, (64, 48))
    assert vp8_keyframe_size(packets[0]) == (64, 48)
    assert vp8_keyframe_size(packets[1]) is None
    assert vp8_keyframe_size(packets[10]) == (64, 48)
    assert vp8_keyframe_size(b"") is None


def test_sources_are_anchored_on_the_call_clock() -> None:
    clock = SourceClock(90_000)
    assert clock.pts_ms(90_000, arrival_ms=5000) == 5000  # first frame: where it arrived
    assert clock.pts_ms(180_000, arrival_ms=9000) == 6000  # later ones: by their timestamps
    late = SourceClock(48_000)
    assert late.pts_ms(0, arrival_ms=7000) == 7000


def test_opus_durations() -> None:
    assert opus_duration_ms(bytes([0xFC, 0xFF])) == 20  # CELT FB 20 ms, one frame
    assert opus_duration_ms(bytes([0x78 | 1])) == 40  # SILK WB 20 ms, two frames
    assert opus_duration_ms(b"") == 0


def test_call_ids() -> None:
    assert check_call_id("Ab_1-x") == "Ab_1-x"
    with pytest.raises(InvalidCallId):
        check_call_id("x" * 129)


def test_a_changed_aiortc_fails_loudly(tmp_path: Path) -> None:
    recorder = CallRecorder(tmp_path, "call-x")
    try:
        with pytest.raises(RecordingError, match="aiortc changed"):
            tap_receiver(object(), recorder, None)  # type: ignore[arg-type]
    finally:
        assert recorder.close() == []


def test_a_full_queue_drops_and_counts_without_blocking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writing = threading.Event()
    write = CallRecorder._write

    def stalled(self: CallRecorder, *item: Any) -> None:
        writing.wait(TIMEOUT)
        write(self, *item)

    monkeypatch.setattr(CallRecorder, "_write", stalled)
    recorder = CallRecorder(tmp_path, "call-q", queue_size=8)
    receiver = FakeReceiver()
    recorder.attach("customer", "video", receiver)
    decoder_queue = receiver.__dict__["_RTCRtpReceiver__decoder_queue"]
    packets = vp8_packets(40)
    started = time.monotonic()
    for index, packet in enumerate(packets):
        receiver.put("VP8", packet, index * 3000)
    assert time.monotonic() - started < 0.5  # never blocks the loop
    assert decoder_queue.qsize() == 40  # the decoder still gets every frame
    assert recorder.stats()["customer"]["dropped_frames"] >= 40 - 9
    writing.set()
    (recorded,) = recorder.close()
    # kept: the queued frames, then (after the loss) from the next keyframe on
    assert 0 < recorded.video_frames < 40
    assert recorded.video_frames + recorded.dropped_frames == 40
    assert len(play(recorded.path).colours) == recorded.video_frames


def test_other_codecs_are_skipped(tmp_path: Path) -> None:
    recorder = CallRecorder(tmp_path, "call-h")
    receiver = FakeReceiver()
    recorder.attach("advisor", "video", receiver)
    for index in range(5):
        receiver.put("H264", b"\x00\x00\x01" * 10, index * 3000)
    assert recorder.skipped_tracks == 1
    assert recorder.close() == []
    assert recorder.close() == []  # idempotent
    assert not (tmp_path / "call-h").exists()  # nothing recorded, nothing left
