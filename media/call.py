"""One call's server-side WebRTC endpoints, and the manager of all calls on this node.

Each side (customer, advisor) negotiates its own ``RTCPeerConnection`` with the server. Media
goes through the server: every remote track is drained into a :class:`~media.relay.FrameSlot`
by an owned pump task, and the other side's peer connection sends a
:class:`~media.relay.ForwardTrack` that reads that slot. The slots outlive peer connections, so
a side that re-offers (page reload) gets a new peer connection and the other side's outgoing
tracks follow the new source without renegotiation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.exceptions import InternalError, InvalidStateError, OperationError
from aiortc.mediastreams import MediaStreamTrack
from av import VideoFrame

from media.config import MediaConfig
from media.errors import (
    BadOffer,
    CallClosed,
    CallExists,
    MediaError,
    RecordingError,
    TooManyCalls,
)
from media.ice import (
    BrowserIceServer,
    browser_ice_servers,
    enable_loopback_ice,
    keep_loopback_candidates,
    loopback_gathering,
    server_rtc_configuration,
)
from media.offer import parse_offer
from media.recorder import CallRecorder, RecordedFile
from media.relay import AUDIO_DEPTH, VIDEO_DEPTH, ForwardTrack, FrameSlot, pump

logger = logging.getLogger(__name__)

Side = Literal["customer", "advisor"]
StateCallback = Callable[[Side, str], None]
SIDES: tuple[Side, Side] = ("customer", "advisor")
REPORTED_STATES = frozenset({"connected", "failed", "closed"})
_NEGOTIATION_ERRORS = (ValueError, OperationError, InternalError, InvalidStateError)


def other_side(side: Side) -> Side:
    """The side that receives what ``side`` sends."""
    return "advisor" if side == "customer" else "customer"


@dataclass(eq=False)
class _Leg:
    """One side's current peer connection and the pump tasks reading its remote tracks."""

    side: Side
    pc: RTCPeerConnection
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    current: bool = True


class CallMedia:
    """The server's two peer connections for one call and the forwarding between them.

    ``on_state(side, state)`` is called when the current peer connection of a side becomes
    "connected", "failed" or "closed" (a peer connection replaced by a re-offer is not
    reported). Use :meth:`CallManager.open` rather than building this directly.
    """

    def __init__(
        self,
        call_id: str,
        config: MediaConfig,
        on_state: StateCallback | None = None,
        on_closed: Callable[[CallMedia], None] | None = None,
    ) -> None:
        self.call_id = call_id
        self._config = config
        self._on_state = on_state
        self._on_closed = on_closed
        self._legs: dict[Side, _Leg] = {}
        self._locks: dict[Side, asyncio.Lock] = {side: asyncio.Lock() for side in SIDES}
        self._slots: dict[tuple[Side, str], FrameSlot] = {
            **{(side, "audio"): FrameSlot("audio", AUDIO_DEPTH) for side in SIDES},
            **{(side, "video"): FrameSlot("video", VIDEO_DEPTH) for side in SIDES},
        }
        self._closed = False
        self._close_done = asyncio.Event()
        self._recorded: list[RecordedFile] = []
        self._recorder: CallRecorder | None = None
        if config.recording_dir is not None:
            self._recorder = CallRecorder(config.recording_dir, call_id)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def connection_state(self, side: Side) -> str | None:
        """The ``connectionState`` of ``side``'s current peer connection, None if it has none."""
        leg = self._legs.get(side)
        return leg.pc.connectionState if leg else None

    async def answer(self, side: Side, offer_sdp: str) -> str:
        """Answer ``side``'s offer (replacing its previous peer connection, if any).

        The offer is complete (no trickle ICE); the answer is returned once the server's ICE
        gathering has completed. Raises :class:`BadOffer` for an SDP that is malformed, not an
        offer or not negotiable, and :class:`CallClosed` once the call is closed.
        """
        if side not in SIDES:
            raise MediaError(f"unknown side {side!r}")
        self._check_open()
        parse_offer(offer_sdp)
        if self._config.ice_loopback_only:
            offer_sdp = keep_loopback_candidates(offer_sdp)
        async with self._locks[side]:
            await self._retire(side, report=False)
            self._check_open()
            leg = self._new_leg(side)
            try:
                return await self._negotiate(leg, offer_sdp)
            except BaseException as err:
                await self._retire(side, report=False)
                if self._closed:
                    raise CallClosed(f"call {self.call_id} closed during negotiation") from err
                raise

    def latest_customer_frame(self) -> VideoFrame | None:
        """The most recent decoded customer video frame (the verification tap), or None.

        Latest-only and never queued: None while no customer video source is live.
        """
        frame = self._slots[("customer", "video")].latest
        return frame if isinstance(frame, VideoFrame) else None

    def stats(self) -> dict[str, Any]:
        """Frame counters: forwarded per direction and kind, received per side and kind."""
        return {
            "customer_to_advisor": self._delivered("customer"),
            "advisor_to_customer": self._delivered("advisor"),
            "received": {side: self._received(side) for side in SIDES},
            "connection": {side: self.connection_state(side) for side in SIDES},
            "recording": self.recording_stats(),
        }

    def recording_stats(self) -> dict[str, dict[str, int]]:
        """Frames recorded and dropped per side (empty without recording)."""
        return self._recorder.stats() if self._recorder is not None else {}

    def recorder_load(self) -> float | None:
        """The writer thread's CPU seconds per second of its life, once closed (None before,
        or without recording)."""
        rec = self._recorder
        if rec is None or not self._closed or rec.writer_wall_seconds <= 0:
            return None
        return rec.writer_cpu_seconds / rec.writer_wall_seconds

    async def close(self) -> list[RecordedFile]:
        """Close both peer connections and every task of the call, and finalise the recording.

        Returns the recorded files (one per side that sent media; empty without recording).
        Idempotent: another call (even a concurrent one) returns the same list once it is done.
        """
        if self._closed:
            await self._close_done.wait()
            return list(self._recorded)
        self._closed = True
        await asyncio.gather(*(self._retire(side, report=True) for side in SIDES))
        for slot in self._slots.values():
            slot.close()
        try:
            if self._recorder is not None:
                self._recorded = await asyncio.get_running_loop().run_in_executor(
                    None, self._recorder.close
                )
        finally:
            self._close_done.set()
            if self._on_closed is not None:
                self._on_closed(self)
        logger.info("call media closed", extra={"call_id": self.call_id})
        return list(self._recorded)

    def _check_open(self) -> None:
        if self._closed:
            raise CallClosed(f"call {self.call_id} is closed")

    def _new_leg(self, side: Side) -> _Leg:
        leg = _Leg(side, RTCPeerConnection(server_rtc_configuration(self._config)))
        self._legs[side] = leg
        leg.pc.on("track", lambda track: self._on_track(leg, track))
        leg.pc.on("connectionstatechange", lambda: self._report(leg))
        return leg

    async def _negotiate(self, leg: _Leg, offer_sdp: str) -> str:
        pc = leg.pc
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except _NEGOTIATION_ERRORS as err:
            raise BadOffer(f"cannot negotiate the offer: {err}") from err
        for transceiver in pc.getTransceivers():
            slot = self._slots.get((other_side(leg.side), transceiver.kind))
            if slot is not None:
                pc.addTrack(ForwardTrack(slot))
        answer = await pc.createAnswer()
        with self._gathering():
            await pc.setLocalDescription(answer)
        logger.info("answered %s", leg.side, extra={"call_id": self.call_id})
        return str(pc.localDescription.sdp)

    def _gathering(self) -> contextlib.AbstractContextManager[None]:
        if self._config.ice_loopback_only:
            return loopback_gathering()
        return contextlib.nullcontext()

    def _on_track(self, leg: _Leg, track: MediaStreamTrack) -> None:
        slot = self._slots.get((leg.side, track.kind))
        if slot is None:
            logger.warning("ignoring a %s track", track.kind, extra={"call_id": self.call_id})
            return
        self._spawn(leg, pump(track, slot), f"pump-{self.call_id}-{leg.side}-{track.kind}")
        self._record(leg, track)

    def _record(self, leg: _Leg, track: MediaStreamTrack) -> None:
        if self._recorder is None:
            return
        receiver = next((r for r in leg.pc.getReceivers() if r.track is track), None)
        if receiver is None:
            raise RecordingError(f"no receiver of the {leg.side} {track.kind} track")
        self._recorder.attach(leg.side, track.kind, receiver)

    def _spawn(self, leg: _Leg, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        leg.tasks.add(task)
        task.add_done_callback(leg.tasks.discard)

    def _report(self, leg: _Leg) -> None:
        state = leg.pc.connectionState
        logger.debug("%s connection %s", leg.side, state, extra={"call_id": self.call_id})
        if not leg.current or state not in REPORTED_STATES or self._on_state is None:
            return
        try:
            self._on_state(leg.side, state)
        except Exception:  # a caller's bug must not break the media path
            logger.exception("on_state callback failed", extra={"call_id": self.call_id})

    async def _retire(self, side: Side, *, report: bool) -> None:
        leg = self._legs.pop(side, None)
        if leg is None:
            return
        leg.current = report
        await leg.pc.close()
        leg.current = False
        for task in leg.tasks:
            task.cancel()
        await asyncio.gather(*leg.tasks, return_exceptions=True)

    def _delivered(self, side: Side) -> dict[str, int]:
        return {kind: self._slots[(side, kind)].delivered for kind in ("audio", "video")}

    def _received(self, side: Side) -> dict[str, int]:
        return {kind: self._slots[(side, kind)].received for kind in ("audio", "video")}


class CallManager:
    """All calls whose media this server node carries, bounded by ``config.max_calls``.

    In loopback-only mode the constructor calls :func:`media.ice.enable_loopback_ice` (an
    explicit, idempotent step that changes nothing outside this package's gathering scope).
    """

    def __init__(self, config: MediaConfig) -> None:
        self.config = config
        self._calls: dict[str, CallMedia] = {}
        if config.ice_loopback_only:
            enable_loopback_ice()

    def __len__(self) -> int:
        return len(self._calls)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._calls))

    def open(self, call_id: str, on_state: StateCallback | None = None) -> CallMedia:
        """Open the media of a new call; raises :class:`CallExists` or :class:`TooManyCalls`."""
        if call_id in self._calls:
            raise CallExists(f"call {call_id} is already open")
        if len(self._calls) >= self.config.max_calls:
            raise TooManyCalls(f"{len(self._calls)} calls open (max {self.config.max_calls})")
        call = CallMedia(call_id, self.config, on_state=on_state, on_closed=self._forget)
        self._calls[call_id] = call
        return call

    def get(self, call_id: str) -> CallMedia | None:
        """The open call with this id, or None."""
        return self._calls.get(call_id)

    async def close(self, call_id: str) -> list[RecordedFile]:
        """Close one call and return its recorded files; [] for an unknown id."""
        call = self._calls.get(call_id)
        return await call.close() if call is not None else []

    async def close_all(self) -> dict[str, list[RecordedFile]]:
        """Close every call (graceful shutdown); the recorded files by call id."""
        calls = list(self._calls.values())
        files = await asyncio.gather(*(call.close() for call in calls))
        return {call.call_id: recorded for call, recorded in zip(calls, files, strict=True)}

    def browser_ice_servers(self) -> list[BrowserIceServer]:
        """The ``iceServers`` list to hand to browsers."""
        return browser_ice_servers(self.config)

    def _forget(self, call: CallMedia) -> None:
        if self._calls.get(call.call_id) is call:
            del self._calls[call.call_id]
