"""Server-side recording of a call's media without decoding or re-encoding.

aiortc hands every reassembled encoded frame (a depayloaded VP8 frame or Opus packet) of a
remote track to its decoder thread through a queue; :func:`tap_receiver` puts a small proxy in
front of that queue so that each frame is also copied, on the event loop and without blocking,
into a bounded queue of the call's :class:`CallRecorder`. One writer thread per recording call
muxes the frames into one WebM file per side (``<spool>/<call_id>/<side>.webm``), so no muxing
or file I/O runs on the event loop. A full queue drops frames (counted; video then waits for the
next keyframe) rather than blocking the loop.

Clock: every source (one receiver of one side) is anchored at its first frame on the call's
monotonic clock (zero when the recording began, ``started_at`` in UTC), so a network drop leaves
a gap and a reload (a new source) continues where the clock is. Each file starts at pts 0 at its
first packet; ``offset_ms`` says where that is on the call's clock, which aligns the two files.

A process that dies leaves unfinished files in the spool; :func:`recover_spool` remuxes what is
readable of them (no decoding) into playable files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import queue
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av

from media.errors import InvalidCallId, RecordingError

logger = logging.getLogger(__name__)

RecSide = Literal["customer", "advisor"]
REC_SIDES: tuple[RecSide, RecSide] = ("customer", "advisor")
QUEUE_SIZE = 512
AUDIO_WAIT_MS = 3000  # audio held back while a side's video has not shown a keyframe yet
FALLBACK_SIZE = (640, 480)  # video size written when no keyframe came within AUDIO_WAIT_MS
SIDECAR = "recording.json"
MS = Fraction(1, 1000)
CLOCKS = {"video": 90_000, "audio": 48_000}
RECORDED_CODECS = {"video": "vp8", "audio": "opus"}
_CALL_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_POLL_SECONDS = 0.1
# A cluster per second, written out at once: a crash loses about the last second.
_MUX_OPTIONS = {"cluster_time_limit": "1000", "flush_packets": "1"}
_OPUS_MS = (10.0, 20.0, 40.0, 60.0)
_CELT_MS = (2.5, 5.0, 10.0, 20.0)


@dataclass(frozen=True, slots=True)
class RecordedFile:
    """One side's finished recording in the spool folder (the caller stores it, then deletes it)."""

    call_id: str
    side: RecSide
    path: Path
    sha256: str
    size: int
    duration_ms: int
    offset_ms: int
    started_at: datetime
    video_frames: int
    audio_frames: int
    dropped_frames: int
    recovered: bool

    def __post_init__(self) -> None:
        check_call_id(self.call_id)
        if self.side not in REC_SIDES or self.size < 0 or self.duration_ms < 0:
            raise ValueError(f"inconsistent recording {self.side} {self.size} {self.duration_ms}")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the sidecar keeps finished files this way)."""
        data = asdict(self)
        data["path"], data["started_at"] = self.path.name, self.started_at.isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], folder: Path) -> RecordedFile:
        """The inverse of :meth:`to_json` for a file in ``folder``."""
        fields = {**data, "path": folder / data["path"]}
        fields["started_at"] = datetime.fromisoformat(data["started_at"])
        return cls(**fields)


def check_call_id(call_id: str) -> str:
    """``call_id`` if it is a public case id (``[A-Za-z0-9_-]``, 1–128), else InvalidCallId."""
    if not _CALL_ID.fullmatch(call_id):
        raise InvalidCallId(f"not a valid call id for a recording: {call_id!r}")
    return call_id


def vp8_keyframe_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) if ``data`` is a VP8 keyframe (RFC 6386 §9.1), else None."""
    if len(data) < 10 or data[0] & 1 or data[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(data[6:8], "little") & 0x3FFF
    height = int.from_bytes(data[8:10], "little") & 0x3FFF
    return width, height


def opus_duration_ms(data: bytes) -> float:
    """The duration of an Opus packet from its TOC byte (RFC 6716 §3.1); 0 if unreadable."""
    if not data:
        return 0.0
    config, code = data[0] >> 3, data[0] & 3
    per_frame = _OPUS_MS[config % 4] if config < 12 else _CELT_MS[config % 4]
    if 12 <= config < 16:
        per_frame = 10.0 if config % 2 == 0 else 20.0
    frames = 1 if code == 0 else 2 if code in (1, 2) else (data[1] & 0x3F if len(data) > 1 else 0)
    return per_frame * frames


@dataclass(slots=True)
class SourceClock:
    """Puts one source's RTP timestamps on the call's clock, anchored at its first frame."""

    clock: int
    anchor_ms: float | None = None

    def pts_ms(self, timestamp: int, arrival_ms: float) -> float:
        """The call-clock time of a frame with RTP ``timestamp`` that arrived at ``arrival_ms``."""
        media_ms = timestamp * 1000 / self.clock
        if self.anchor_ms is None:
            self.anchor_ms = arrival_ms - media_ms
        return self.anchor_ms + media_ms


@dataclass(eq=False, slots=True)
class _Source:
    """One tapped receiver. ``offered`` numbers its frames on the loop; the writer thread sees a
    dropped frame as a gap in the numbers (``written``)."""

    side: RecSide
    kind: str
    clock: SourceClock
    offered: int = 0
    written: int = 0
    started: bool = False
    codec_checked: bool = False
    skipped: bool = False


_Item = tuple[_Source, int, bytes, int, float]


class _QueueTap:
    """Stands in for a receiver's decoder queue: forwards to it, then copies to the recorder."""

    def __init__(self, inner: queue.Queue[Any], recorder: CallRecorder, source: _Source) -> None:
        self._inner = inner
        self._recorder = recorder
        self._source = source

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        self._inner.put(item, block, timeout)
        if item is None:
            return
        codec, frame = item
        try:
            self._recorder.offer(self._source, str(codec.name), frame.data, frame.timestamp)
        except Exception:  # a recorder bug must not break the media path
            self._source.skipped = True
            logger.exception("recording a %s track failed", self._source.kind)

    def __getattr__(self, name: str) -> Any:  # get(), qsize() … of the decoder thread
        return getattr(self._inner, name)


_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"


def tap_receiver(receiver: Any, recorder: CallRecorder, source: _Source) -> None:
    """Copy every encoded frame ``receiver`` reassembles into ``recorder``.

    This is the one place that touches aiortc's internals: ``RTCRtpReceiver`` puts
    ``(codec, JitterFrame)`` into its private ``__decoder_queue`` (a ``queue.Queue``) from
    ``_handle_rtp_packet`` on the event loop, and ``None`` when it stops; ``JitterFrame.data``
    is the depayloaded frame, ``.timestamp`` the mapped RTP timestamp. The attribute is replaced
    by a forwarding proxy (the decoder thread may already hold the original queue, which keeps
    receiving every item). Raises :class:`RecordingError` if aiortc no longer has that queue.
    """
    inner = getattr(receiver, _DECODER_QUEUE, None)
    if isinstance(inner, _QueueTap):
        raise RecordingError("this receiver is already recorded")
    if not isinstance(inner, queue.Queue):
        raise RecordingError(
            f"aiortc changed: RTCRtpReceiver has no {_DECODER_QUEUE} queue.Queue to tap "
            f"(found {type(inner).__name__}); the recorder must be adapted"
        )
    setattr(receiver, _DECODER_QUEUE, _QueueTap(inner, recorder, source))


@dataclass(slots=True)
class _Counters:
    video_frames: int = 0
    audio_frames: int = 0
    dropped_frames: int = 0


@dataclass(eq=False)
class _SideFile:
    """One side's WebM file; used by the writer thread only."""

    path: Path
    counters: _Counters
    container: Any = None
    streams: dict[str, Any] = field(default_factory=dict)
    zero_ms: int = 0
    last_pts: dict[str, int] = field(default_factory=lambda: {"video": -1, "audio": -1})
    end_ms: float = 0.0
    has_video: bool = False
    pending: list[tuple[float, bytes]] = field(default_factory=list)

    def open(self, size: tuple[int, int] | None, first_ms: float) -> None:
        self.zero_ms = round(first_ms)
        self.container = av.open(str(self.path), "w", format="webm", options=_MUX_OPTIONS)
        if size is not None:
            video = self.container.add_mux_stream("vp8", width=size[0], height=size[1])
            video.time_base, self.streams["video"] = MS, video
        # A libopus stream (not a bare mux stream) so that the file carries the OpusHead
        # (CodecPrivate) browsers require; the encoder is opened once, never fed.
        audio = self.container.add_stream("libopus", rate=48_000, layout="stereo")
        audio.time_base, self.streams["audio"] = MS, audio

    def mux(self, kind: str, data: bytes, at_ms: float, keyframe: bool) -> bool:
        stream = self.streams.get(kind)
        if stream is None:
            return False
        pts = max(round(at_ms) - self.zero_ms, self.last_pts[kind] + 1)
        packet = av.Packet(data)
        packet.pts = packet.dts = pts
        packet.time_base, packet.stream, packet.is_keyframe = MS, stream, keyframe
        length = opus_duration_ms(data) if kind == "audio" else 0.0
        if length:
            packet.duration = round(length)
        self.container.mux(packet)
        self.last_pts[kind] = pts
        self.end_ms = max(self.end_ms, pts + length)
        return True

    def close(self) -> None:
        if self.container is not None:
            try:
                self.container.close()
            finally:
                self.container = None


class CallRecorder:
    """Records one call: a tap per receiver, a bounded queue and one writer thread.

    Create it when the call opens (that is the clock's zero); :meth:`attach` each remote track's
    receiver; :meth:`close` (blocking: run it in a thread) finalises the files.
    """

    def __init__(self, spool_dir: Path, call_id: str, queue_size: int = QUEUE_SIZE) -> None:
        self.call_id = check_call_id(call_id)
        self.folder = spool_dir / call_id
        self.started_at = datetime.now(UTC)
        self._zero = time.monotonic()
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=queue_size)
        self._counters = {side: _Counters() for side in REC_SIDES}
        self._files = {
            s: _SideFile(self.folder / f"{s}.webm", self._counters[s]) for s in REC_SIDES
        }
        self.skipped_tracks = 0
        # The writer thread's own CPU time and lifetime (seconds): what recording costs the
        # server beyond the tap's queue put on the loop (bench/recording.py reports it).
        self.writer_cpu_seconds = 0.0
        self.writer_wall_seconds = 0.0
        self._stop = threading.Event()
        self._results: list[RecordedFile] | None = None
        self._thread = threading.Thread(target=self._run, name=f"recorder-{call_id}", daemon=True)
        self._thread.start()

    def attach(self, side: RecSide, kind: str, receiver: Any) -> None:
        """Record what ``receiver`` (``side``'s ``kind`` track) receives from now on."""
        tap_receiver(receiver, self, _Source(side, kind, SourceClock(CLOCKS[kind])))

    def offer(self, source: _Source, codec: str, data: bytes, timestamp: int) -> None:
        """Take one encoded frame (on the loop; never blocks)."""
        if not source.codec_checked:
            source.codec_checked = True
            if codec.lower() != RECORDED_CODECS.get(source.kind):
                source.skipped = True
                self.skipped_tracks += 1
                logger.warning(
                    "not recording a %s track in %s", source.kind, codec, extra=self._extra
                )
        if source.skipped or self._stop.is_set():
            return
        arrival_ms = (time.monotonic() - self._zero) * 1000
        source.offered += 1
        try:
            self._queue.put_nowait((source, source.offered, data, timestamp, arrival_ms))
        except queue.Full:
            self._counters[source.side].dropped_frames += 1

    def stats(self) -> dict[str, dict[str, int]]:
        """Frames written and dropped so far, per side."""
        return {side: asdict(counters) for side, counters in self._counters.items()}

    def close(self) -> list[RecordedFile]:
        """Write what is queued, finalise the files and return them. Blocking; idempotent."""
        self._stop.set()
        self._thread.join()
        return list(self._results or [])

    @property
    def _extra(self) -> dict[str, str]:
        return {"call_id": self.call_id}

    # ---- writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._save_sidecar()
            self._drain()
        except Exception:
            logger.exception("recording failed", extra=self._extra)
        finally:
            self._results = self._finish()
            self.writer_cpu_seconds = time.thread_time()
            self.writer_wall_seconds = time.monotonic() - self._zero

    def _drain(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            try:
                self._write(*item)
            except (av.FFmpegError, ValueError, OSError):
                self._counters[item[0].side].dropped_frames += 1
                logger.exception("cannot record a %s frame", item[0].kind, extra=self._extra)

    def _write(
        self, source: _Source, seq: int, data: bytes, timestamp: int, arrival_ms: float
    ) -> None:
        file = self._files[source.side]
        at_ms = source.clock.pts_ms(timestamp, arrival_ms)
        lost, source.written = seq != source.written + 1, seq
        if source.kind == "audio":
            self._write_audio(file, data, at_ms)
            return
        file.has_video = True
        size = vp8_keyframe_size(data)
        if lost or not source.started:
            source.started = False
            if size is None:  # undecodable until the next keyframe
                file.counters.dropped_frames += 1
                return
            source.started = True
        if file.container is None:
            self._open(file, size, at_ms)
        if file.mux("video", data, at_ms, size is not None):
            file.counters.video_frames += 1
        else:
            file.counters.dropped_frames += 1

    def _write_audio(self, file: _SideFile, data: bytes, at_ms: float) -> None:
        if file.container is None:
            file.pending.append((at_ms, data))
            if at_ms - file.pending[0][0] < AUDIO_WAIT_MS:
                return
            self._open(file, FALLBACK_SIZE if file.has_video else None, at_ms)
            return
        if file.mux("audio", data, at_ms, True):
            file.counters.audio_frames += 1

    def _open(self, file: _SideFile, size: tuple[int, int] | None, at_ms: float) -> None:
        first = min([at_ms, *(pending_at for pending_at, _ in file.pending)])
        file.open(size, first)
        self._save_sidecar()
        pending, file.pending = file.pending, []
        for pending_at, data in pending:
            if file.mux("audio", data, pending_at, True):
                file.counters.audio_frames += 1

    def _finish(self) -> list[RecordedFile]:
        results: list[RecordedFile] = []
        for side, file in self._files.items():
            if file.container is None and file.pending:
                with contextlib.suppress(Exception):
                    self._open(file, None, file.pending[-1][0])
            try:
                file.close()
            except Exception:
                logger.exception("cannot finalise the %s recording", side, extra=self._extra)
            counters = file.counters
            if counters.video_frames + counters.audio_frames and file.path.exists():
                results.append(self._recorded(side, file))
            else:
                file.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            if results:
                self._save_sidecar(results)
            else:  # nothing recorded: leave no folder behind
                (self.folder / SIDECAR).unlink(missing_ok=True)
                self.folder.rmdir()
        return results

    def _recorded(self, side: RecSide, file: _SideFile) -> RecordedFile:
        return RecordedFile(
            call_id=self.call_id,
            side=side,
            path=file.path,
            sha256=file_sha256(file.path),
            size=file.path.stat().st_size,
            duration_ms=round(file.end_ms),
            offset_ms=file.zero_ms,
            started_at=self.started_at,
            video_frames=file.counters.video_frames,
            audio_frames=file.counters.audio_frames,
            dropped_frames=file.counters.dropped_frames,
            recovered=False,
        )

    def _save_sidecar(self, finished: list[RecordedFile] | None = None) -> None:
        offsets = {s: f.zero_ms for s, f in self._files.items() if f.streams}
        data: dict[str, Any] = {
            "call_id": self.call_id,
            "started_at": self.started_at.isoformat(),
            "offsets_ms": offsets,
        }
        if finished is not None:
            data["finished"] = [recorded.to_json() for recorded in finished]
        write_json(self.folder / SIDECAR, data)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` atomically with ``data`` as JSON."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---- crash recovery ---------------------------------------------------------------------------


def discard(path: Path) -> None:
    """Remove a finished file the caller has stored, and its call's folder once nothing but the
    sidecar is left in it. Blocking (file system): run it in a thread."""
    path.unlink(missing_ok=True)
    folder = path.parent
    try:
        rest = list(folder.iterdir())
    except FileNotFoundError:
        return
    if all(entry.name == SIDECAR for entry in rest):
        for entry in rest:
            entry.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # a file arrived meanwhile: leave the folder
            folder.rmdir()


def recover_spool(spool_dir: Path) -> list[RecordedFile]:
    """Finalise every call folder a dead process left in ``spool_dir`` (blocking; run it in a
    thread, before this process records anything).

    Unfinished files are remuxed (no decoding) into fresh WebM files with ``recovered=True``; a
    file with no readable packet is logged and renamed ``*.broken``. Files a normal close
    finished (listed in the folder's sidecar) are returned as they are. Empty folders are removed.
    """
    if not spool_dir.is_dir():
        return []
    recovered: list[RecordedFile] = []
    for folder in sorted(p for p in spool_dir.iterdir() if p.is_dir()):
        if not _CALL_ID.fullmatch(folder.name):
            logger.warning("skipping %s in the recording spool", folder.name)
            continue
        try:
            recovered += _recover_folder(folder)
        except (OSError, ValueError):
            logger.exception("cannot recover %s", folder, extra={"call_id": folder.name})
    return recovered


def _recover_folder(folder: Path) -> list[RecordedFile]:
    sidecar = _read_sidecar(folder)
    started_at = _started_at(folder, sidecar)
    finished = {item["side"]: item for item in sidecar.get("finished", [])}
    offsets = sidecar.get("offsets_ms", {})
    results: list[RecordedFile] = []
    for side in REC_SIDES:
        path = folder / f"{side}.webm"
        (folder / f"{side}.recovering.webm").unlink(missing_ok=True)
        if not path.exists():
            continue
        done = finished.get(side)
        if done is not None and done.get("size") == path.stat().st_size:
            results.append(RecordedFile.from_json(done, folder))
            continue
        offset = int(offsets.get(side, 0))
        result = _remux(folder.name, side, path, offset, started_at)
        if result is not None:
            results.append(result)
    if not any(folder.glob("*.webm")) and not any(folder.glob("*.broken")):
        for leftover in folder.iterdir():
            leftover.unlink()
        folder.rmdir()
    return results


def _read_sidecar(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / SIDECAR).read_text())
    except (OSError, ValueError):
        logger.warning("no readable sidecar in %s", folder, extra={"call_id": folder.name})
        return {}
    return data if isinstance(data, dict) else {}


def _started_at(folder: Path, sidecar: dict[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(str(sidecar["started_at"]))
    except (KeyError, ValueError):  # the clock's zero is lost: the folder's time is the best guess
        return datetime.fromtimestamp(folder.stat().st_mtime, UTC)


@dataclass(slots=True)
class _Remuxed:
    counts: dict[str, int] = field(default_factory=lambda: {"video": 0, "audio": 0})
    end_ms: float = 0.0


def _remux(
    call_id: str, side: RecSide, path: Path, offset_ms: int, started_at: datetime
) -> RecordedFile | None:
    target = path.with_name(f"{side}.recovering.webm")
    try:
        remuxed = _copy_packets(path, target)
    except (av.FFmpegError, OSError, ValueError) as err:
        logger.warning("unreadable recording %s: %s", path.name, err, extra={"call_id": call_id})
        remuxed = None
    if remuxed is None or not sum(remuxed.counts.values()):
        target.unlink(missing_ok=True)
        os.replace(path, path.with_suffix(".broken"))
        logger.error("recording %s has no readable packet", path.name, extra={"call_id": call_id})
        return None
    os.replace(target, path)
    return RecordedFile(
        call_id=call_id,
        side=side,
        path=path,
        sha256=file_sha256(path),
        size=path.stat().st_size,
        duration_ms=round(remuxed.end_ms),
        offset_ms=offset_ms,
        started_at=started_at,
        video_frames=remuxed.counts["video"],
        audio_frames=remuxed.counts["audio"],
        dropped_frames=0,
        recovered=True,
    )


def _copy_packets(source: Path, target: Path) -> _Remuxed:
    """Every readable packet of ``source`` into a new WebM ``target`` (stops at the damage)."""
    result = _Remuxed()
    with av.open(str(source)) as inp:
        out = av.open(str(target), "w", format="webm")
        try:
            streams = {s.index: _mux_stream_like(out, s) for s in inp.streams if s.type in CLOCKS}
            with contextlib.suppress(av.FFmpegError):
                for packet in inp.demux(*[s for s in inp.streams if s.index in streams]):
                    if packet.dts is None or packet.pts is None:
                        continue
                    _copy_packet(packet, streams[packet.stream.index], result)
        finally:
            out.close()
    return result


def _mux_stream_like(out: Any, stream: Any) -> Any:
    if stream.type == "video":
        ctx = stream.codec_context
        new = out.add_mux_stream("vp8", width=ctx.width, height=ctx.height)
    else:
        new = out.add_stream("libopus", rate=48_000, layout="stereo")
    new.time_base = MS
    return new


def _copy_packet(packet: Any, stream: Any, result: _Remuxed) -> None:
    start_ms = float(packet.pts * packet.time_base * 1000)
    length = float((packet.duration or 0) * packet.time_base * 1000)
    packet.pts = packet.dts = round(start_ms)
    packet.time_base, packet.stream = MS, stream
    stream.container.mux(packet)
    result.counts[stream.type] += 1
    result.end_ms = max(result.end_ms, start_ms + length)
