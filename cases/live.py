"""The live desk: queue, presence and calls on this node, driven by signaling messages.

``web/ws.py`` owns the sockets; it tells the desk who connected and hands it each parsed
message. The desk checks who may do what (a customer only ever reaches their own case, only
advisors accept calls), moves the case's state machine, asks ``media`` for the server's WebRTC
endpoints, and pushes the results to both sides through the hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC
from functools import partial
from typing import Any, Literal, Protocol

from av import VideoFrame
from sqlalchemy.exc import SQLAlchemyError

from cases.cobrowse_desk import CobrowseDesk, CobrowseTarget
from cases.errors import CaseError, InvalidTransition
from cases.recordings import RecordingSink
from cases.states import CallState, CaseState, check_call_move
from cases.store import CaseRef, CaseStore
from cases.verify import VerifyDesk, VerifyRefused, VerifyTarget
from media.errors import BadOffer, CallClosed, MediaError
from media.recorder import RecordedFile
from signaling.grace import GraceTimers
from signaling.hub import CLOSE_SUPERSEDED, Hub
from signaling.messages import (
    CallEnded,
    CallHangup,
    CallStarted,
    ChatMessage,
    ChatSend,
    ClientMessage,
    CobrowseAccept,
    CobrowseDecline,
    CobrowseDraw,
    CobrowseEvents,
    CobrowseHighlight,
    CobrowsePointer,
    CobrowseRequest,
    CobrowseSnapshot,
    CobrowseStop,
    DeviceInfo,
    ErrorCode,
    Ping,
    Pong,
    PresenceSet,
    PresenceState,
    ProtocolError,
    QueueAccept,
    QueueEntry,
    QueueJoin,
    QueueLeave,
    QueuePosition,
    QueueSnapshot,
    ServerMessage,
    VerifyCancel,
    VerifyResult,
    VerifyStart,
    WebrtcAnswer,
    WebrtcOffer,
)
from signaling.presence import InvalidPresenceTransition, Presence, PresenceStatus
from signaling.queue import WaitingQueue
from store.db import retry_transient

log = logging.getLogger(__name__)

Side = Literal["customer", "advisor"]
Ender = Literal["customer", "advisor", "system"]


class CallEndpoints(Protocol):
    """The server's media endpoints of one call (``media.CallMedia``)."""

    def latest_customer_frame(self) -> VideoFrame | None:
        """The latest decoded frame of the customer's camera (the verification tap)."""
        ...

    async def answer(self, side: Side, offer_sdp: str) -> str:
        """Answer one side's SDP offer."""
        ...


class MediaCalls(Protocol):
    """Opens and closes calls' media (``media.CallManager``)."""

    def open(
        self, call_id: str, on_state: Callable[[Side, str], None] | None = None
    ) -> CallEndpoints:
        """Create the endpoints of a new call."""
        ...

    async def close(self, call_id: str) -> Sequence[RecordedFile]:
        """Close a call's endpoints (idempotent); the finished recordings, if any."""
        ...


@dataclass(slots=True)
class Call:
    """A call in progress (mutable: its state moves)."""

    case: CaseRef
    advisor_id: int
    advisor_name: str
    media: CallEndpoints
    state: CallState = CallState.CONNECTING

    def move(self, wanted: CallState) -> None:
        """Change state through the call transition table."""
        check_call_move(self.state, wanted)
        self.state = wanted


def customer_key(case_id: str) -> str:
    """Hub principal of a customer's case."""
    return f"customer:{case_id}"


def advisor_key(staff_id: int) -> str:
    """Hub principal of an advisor."""
    return f"advisor:{staff_id}"


_VERIFY_CODES = {
    "bad_state": ErrorCode.BAD_STATE,
    "locked": ErrorCode.VERIFY_LOCKED,
    "limit": ErrorCode.VERIFY_LIMIT,
    "no_reference": ErrorCode.NO_REFERENCE,
}


def _side_key(call: Call, side: Side) -> str:
    return customer_key(call.case.public_id) if side == "customer" else advisor_key(call.advisor_id)


def _bad_state(err: CaseError | InvalidPresenceTransition, ref: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_STATE, str(err), ref)


class LiveDesk:
    """Queue, presence and calls of this node."""

    def __init__(
        self,
        hub: Hub,
        cases: CaseStore,
        media: MediaCalls,
        *,
        average_handle_seconds: int,
        reconnect_grace_seconds: float,
    ) -> None:
        self.hub = hub
        self.cases = cases
        self.media = media
        self.queue = WaitingQueue(average_handle_seconds)
        self.presence = Presence()
        self._grace = GraceTimers(reconnect_grace_seconds)
        self.verify: VerifyDesk | None = None
        # Co-browsing of calls (None: refused with "bad_state" — tests of the queue alone).
        self.cobrowse: CobrowseDesk | None = None
        # Where finished recordings go (None: they are not kept — tests of the queue alone).
        self.recordings: RecordingSink | None = None
        # Told the case's public id when its service status may have changed (call started,
        # verification ended): the authorise desk pushes the new status.
        self.on_case_change: Callable[[str], None] | None = None
        self._advisors: dict[int, str] = {}  # connected advisors: id → display name
        self._calls: dict[str, Call] = {}  # by case public id
        self._advisor_call: dict[int, str] = {}
        self._lock = asyncio.Lock()

    # ---- connections ---------------------------------------------------------------------

    def restore(self, waiting: Sequence[CaseRef]) -> None:
        """After a restart: the customers who were waiting are in line again, in their order,
        each with the reconnect grace to come back (their pages reconnect on their own) before
        the case is abandoned."""
        for case in waiting:
            if self.queue.join(self._entry(case)):
                self.customer_disconnected(case.public_id)
        if waiting:
            log.info("%d waiting customers kept their place across the restart", len(waiting))
            self._broadcast_queue()

    def customer_connected(self, case_id: str) -> None:
        """A customer's socket opened: cancel any pending drop for their case."""
        self._grace.cancel(customer_key(case_id))

    def advisor_connected(self, staff_id: int, name: str) -> None:
        """An advisor's socket opened: show them the queue and their presence."""
        self._grace.cancel(advisor_key(staff_id))
        self._advisors[staff_id] = name
        self.hub.send(advisor_key(staff_id), PresenceState(status=self.presence.get(staff_id)))
        self.hub.send(advisor_key(staff_id), self._snapshot())

    def customer_disconnected(self, case_id: str) -> None:
        """A customer's last socket closed: drop them after the grace period."""
        self._grace.start(customer_key(case_id), partial(self._drop_customer, case_id))

    def advisor_disconnected(self, staff_id: int) -> None:
        """An advisor's last socket closed: offline at once, their call ends after the grace."""
        if staff_id not in self._advisor_call:
            self._advisors.pop(staff_id, None)
            self.presence.move(staff_id, PresenceStatus.OFFLINE)
            self._broadcast_queue()
            return
        self._grace.start(advisor_key(staff_id), partial(self._drop_advisor, staff_id))

    def superseded(self, case_ids: Sequence[str]) -> None:
        """The customer opened a new case, and these (abandoned with it in the database) are
        over: out of the queue, no drop pending, their pages told (a close code they do not
        reconnect after)."""
        changed = False
        for case_id in case_ids:
            self._grace.cancel(customer_key(case_id))
            changed |= self.queue.remove(case_id) is not None
            self.hub.close_principal(
                customer_key(case_id), CLOSE_SUPERSEDED, "continued in another window"
            )
        if changed:
            self._broadcast_queue()

    # ---- messages ------------------------------------------------------------------------

    async def handle_customer(self, case_id: str, msg: ClientMessage) -> None:
        """Act on a customer's message; raises :class:`ProtocolError` to refuse it."""
        match msg:
            case Ping():
                self.hub.send(customer_key(case_id), Pong())
            case QueueJoin():
                await self._join(case_id)
            case QueueLeave():
                await self._leave(case_id)
            case WebrtcOffer(sdp=sdp):
                await self._offer(self._call_of_case(case_id, msg.type), "customer", sdp)
            case ChatSend(text=text):
                await self._chat(self._call_of_case(case_id, msg.type), "customer", text)
            case CallHangup():
                await self.end_call(self._call_of_case(case_id, msg.type), "customer", "hangup")
            case DeviceInfo(camera_label=label):
                if self.verify is not None:
                    self.verify.note_camera(case_id, label)
            case CobrowseAccept() | CobrowseDecline() | CobrowseStop() | CobrowseEvents():
                call = self._call_of_case(case_id, msg.type)
                await self._cobrowse_desk(msg.type).from_customer(self._cobrowse_target(call), msg)
            case _:
                raise ProtocolError(ErrorCode.FORBIDDEN, "customers may not do this", msg.type)

    async def handle_advisor(self, staff_id: int, msg: ClientMessage) -> None:
        """Act on an advisor's message; raises :class:`ProtocolError` to refuse it."""
        match msg:
            case Ping():
                self.hub.send(advisor_key(staff_id), Pong())
            case PresenceSet(status=status):
                self._set_presence(staff_id, PresenceStatus(status))
            case QueueAccept(case_id=case_id):
                await self._accept(staff_id, case_id)
            case WebrtcOffer(sdp=sdp):
                await self._offer(self._call_of_advisor(staff_id, msg.type), "advisor", sdp)
            case ChatSend(text=text):
                await self._chat(self._call_of_advisor(staff_id, msg.type), "advisor", text)
            case CallHangup():
                call = self._call_of_advisor(staff_id, msg.type)
                await self.end_call(call, "advisor", "hangup")
            case VerifyStart():
                await self._verify_start(self._call_of_advisor(staff_id, msg.type))
            case VerifyCancel():
                call = self._call_of_advisor(staff_id, msg.type)
                if self.verify is not None:
                    await self.verify.cancel(call.case.public_id)
            case (
                CobrowseRequest()
                | CobrowseStop()
                | CobrowseSnapshot()
                | CobrowsePointer()
                | CobrowseHighlight()
                | CobrowseDraw()
            ):
                call = self._call_of_advisor(staff_id, msg.type)
                await self._cobrowse_desk(msg.type).from_advisor(self._cobrowse_target(call), msg)
            case _:
                raise ProtocolError(ErrorCode.FORBIDDEN, "advisors may not do this", msg.type)

    # ---- queue ---------------------------------------------------------------------------

    async def _join(self, case_id: str) -> None:
        case = await self.cases.get(case_id)
        call = self._calls.get(case_id)
        if call is not None:  # a reload during the call: tell the page the call is on
            self.hub.send(customer_key(case_id), self._started(call, "customer"))
            if self.cobrowse is not None:
                self.cobrowse.resync(case_id)
            return
        if case.state is CaseState.CONSENTED:
            try:
                case = await self.cases.move(case_id, CaseState.QUEUED)
            except InvalidTransition as err:
                raise _bad_state(err, "queue.join") from err
        elif case.state is not CaseState.QUEUED:
            raise ProtocolError(
                ErrorCode.BAD_STATE, f'cannot join the queue in state "{case.state}"', "queue.join"
            )
        self.queue.join(self._entry(case))
        self._broadcast_queue()

    async def _leave(self, case_id: str) -> None:
        if self.queue.remove(case_id) is None:
            raise ProtocolError(ErrorCode.BAD_STATE, "not waiting in the queue", "queue.leave")
        with contextlib.suppress(InvalidTransition):
            await self.cases.move(case_id, CaseState.ABANDONED)
        self._broadcast_queue()

    @staticmethod
    def _entry(case: CaseRef) -> QueueEntry:
        since = case.queued_at.astimezone(UTC).isoformat() if case.queued_at else ""
        return QueueEntry(
            case_id=case.public_id,
            customer_name=case.customer_name,
            service=case.service,
            waiting_since=since,
            elderly_mode=case.elderly_mode,
            lang=case.lang,
        )

    def _staffed(self) -> int:
        return self.presence.count(PresenceStatus.AVAILABLE) + self.presence.count(
            PresenceStatus.IN_CALL
        )

    def _snapshot(self) -> QueueSnapshot:
        return QueueSnapshot(
            entries=self.queue.entries(),
            advisors_available=self.presence.count(PresenceStatus.AVAILABLE),
        )

    def _broadcast_queue(self) -> None:
        snapshot = self._snapshot()
        for staff_id in self._advisors:
            self.hub.send(advisor_key(staff_id), snapshot)
        size, staffed = len(self.queue), self._staffed()
        for position, entry in enumerate(self.queue.entries(), start=1):
            wait = self.queue.estimated_wait(position, staffed)
            self.hub.send(
                customer_key(entry.case_id),
                QueuePosition(position=position, size=size, estimated_wait_seconds=wait),
            )

    # ---- presence ------------------------------------------------------------------------

    def _set_presence(self, staff_id: int, status: PresenceStatus) -> None:
        if staff_id in self._advisor_call:
            raise ProtocolError(ErrorCode.BAD_STATE, "finish the call first", "presence.set")
        try:
            self.presence.move(staff_id, status)
        except InvalidPresenceTransition as err:
            raise _bad_state(err, "presence.set") from err
        self.hub.send(advisor_key(staff_id), PresenceState(status=status.value))
        self._broadcast_queue()

    # ---- calls ---------------------------------------------------------------------------

    def _call_of_case(self, case_id: str, ref: str) -> Call:
        call = self._calls.get(case_id)
        if call is None:
            raise ProtocolError(ErrorCode.BAD_STATE, "no call in progress", ref)
        return call

    def _call_of_advisor(self, staff_id: int, ref: str) -> Call:
        case_id = self._advisor_call.get(staff_id)
        if case_id is None:
            raise ProtocolError(ErrorCode.BAD_STATE, "no call in progress", ref)
        return self._calls[case_id]

    def _started(self, call: Call, side: Side) -> CallStarted:
        peer = call.advisor_name if side == "customer" else call.case.customer_name
        return CallStarted(case_id=call.case.public_id, peer_name=peer, service=call.case.service)

    async def _accept(self, staff_id: int, case_id: str) -> None:
        async with self._lock:
            if self.presence.get(staff_id) is not PresenceStatus.AVAILABLE:
                raise ProtocolError(
                    ErrorCode.BAD_STATE, "set yourself available first", "queue.accept"
                )
            entry = self.queue.remove(case_id)
            if entry is None:
                raise ProtocolError(
                    ErrorCode.NOT_FOUND, "that customer is no longer waiting", "queue.accept"
                )
            try:
                media = self.media.open(case_id, self._media_state_cb(case_id))
            except MediaError as err:
                self.queue.join(entry)
                raise ProtocolError(ErrorCode.BUSY, str(err), "queue.accept") from err
            try:
                case = await self.cases.move(case_id, CaseState.IN_CALL, advisor_id=staff_id)
            except CaseError as err:
                await self.media.close(case_id)
                self._broadcast_queue()
                raise _bad_state(err, "queue.accept") from err
            call = Call(case, staff_id, self._advisors.get(staff_id, ""), media)
            self._calls[case_id] = call
            self._advisor_call[staff_id] = case_id
            self.presence.move(staff_id, PresenceStatus.IN_CALL)
        log.info("call started", extra={"case_id": case_id, "advisor_id": staff_id})
        self.hub.send(advisor_key(staff_id), PresenceState(status="in_call"))
        self.hub.send(advisor_key(staff_id), self._started(call, "advisor"))
        self.hub.send(customer_key(case_id), self._started(call, "customer"))
        self._broadcast_queue()
        if self.on_case_change is not None:
            self.on_case_change(case_id)

    def _media_state_cb(self, case_id: str) -> Callable[[Side, str], None]:
        def on_state(side: Side, state: str) -> None:
            call = self._calls.get(case_id)
            if call is not None and state == "connected" and call.state is CallState.CONNECTING:
                call.move(CallState.ACTIVE)
            log.info("media %s %s", side, state, extra={"case_id": case_id})

        return on_state

    async def _offer(self, call: Call, side: Side, sdp: str) -> None:
        try:
            answer = await call.media.answer(side, sdp)
        except BadOffer as err:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"sdp: {err}", "webrtc.offer") from err
        except CallClosed as err:
            raise ProtocolError(ErrorCode.BAD_STATE, "the call has ended", "webrtc.offer") from err
        key = (
            customer_key(call.case.public_id)
            if side == "customer"
            else advisor_key(call.advisor_id)
        )
        self.hub.send(key, WebrtcAnswer(sdp=answer))

    async def _chat(self, call: Call, side: Side, text: str) -> None:
        sent_at = await self.cases.add_chat(call.case.id, side, text)
        name = call.case.customer_name if side == "customer" else call.advisor_name
        msg = ChatMessage(
            sender="customer" if side == "customer" else "advisor",
            sender_name=name,
            text=text,
            sent_at=sent_at.astimezone(UTC).isoformat(),
        )
        self.hub.send(customer_key(call.case.public_id), msg)
        self.hub.send(advisor_key(call.advisor_id), msg)

    async def end_call(self, call: Call, by: Ender, reason: str) -> None:
        """End a call: tell both sides and free the advisor first (no await before that), then
        stop verification and co-browsing, close the media, store the recordings and close
        the case. Each later step is guarded: one that fails is logged and the others still
        run, so a failed upload never leaves the case open or the advisor busy."""
        case_id = call.case.public_id
        if self._calls.pop(case_id, None) is None:
            return
        self._advisor_call.pop(call.advisor_id, None)
        self._grace.cancel(customer_key(case_id))
        self._grace.cancel(advisor_key(call.advisor_id))
        call.move(CallState.ENDED)
        # Sharing stops before anyone hears of the end (no event may be relayed after it).
        store_cobrowse = self.cobrowse.halt(case_id) if self.cobrowse is not None else None
        ended = CallEnded(case_id=case_id, ended_by=by, reason=reason)
        self.hub.send(customer_key(case_id), ended)
        self.hub.send(advisor_key(call.advisor_id), ended)
        if call.advisor_id in self._advisors:
            self.presence.move(call.advisor_id, PresenceStatus.AVAILABLE)
            self.hub.send(advisor_key(call.advisor_id), PresenceState(status="available"))
        else:
            self.presence.move(call.advisor_id, PresenceStatus.OFFLINE)
        log.info("call ended by %s", by, extra={"case_id": case_id})
        self._broadcast_queue()
        await self._wind_up(case_id, by, store_cobrowse)

    async def _wind_up(
        self, case_id: str, by: Ender, store_cobrowse: Coroutine[Any, Any, None] | None
    ) -> None:
        """What follows a call's end, each step on its own (see :meth:`end_call`)."""
        extra = {"case_id": case_id}
        if self.verify is not None:
            try:
                await self.verify.cancel(case_id)
            except Exception:
                log.exception("could not stop the verification", extra=extra)
        if store_cobrowse is not None:  # the co-browse stream, into the blob store
            try:
                await store_cobrowse
            except Exception:
                log.exception("could not store the co-browse stream", extra=extra)
        try:
            recorded = await self.media.close(case_id)
        except Exception:
            log.exception("could not close the call's media", extra=extra)
            recorded = []
        if recorded and self.recordings is not None:
            # Before the case closes: its review's flags look at the recordings.
            try:
                await self.recordings.store(recorded)
            except Exception:
                log.exception("could not store the call's recordings", extra=extra)
        try:
            await retry_transient(lambda: self.cases.move(case_id, CaseState.CLOSED, ended_by=by))
        except Exception:
            log.exception("could not close case", extra=extra)

    # ---- verification --------------------------------------------------------------------

    async def _verify_start(self, call: Call) -> None:
        if self.verify is None:
            raise ProtocolError(
                ErrorCode.VERIFY_UNAVAILABLE, "verification is not enabled", "verify.start"
            )
        case = call.case
        target = VerifyTarget(
            case.public_id, case.id, case.customer_id, call.advisor_id, case.service, call.media
        )
        try:
            await self.verify.start(target)
        except VerifyRefused as err:
            raise ProtocolError(_VERIFY_CODES[err.code], str(err), "verify.start") from err

    def send_verify(self, case_id: str, msg: ServerMessage) -> None:
        """Deliver a verification message to both sides of a call (the customer's copy of a
        result carries no scores, thresholds, reasons or images: only the outcome, the
        attempts left and the advice)."""
        call = self._calls.get(case_id)
        if call is None:
            return
        self.hub.send(advisor_key(call.advisor_id), msg)
        if isinstance(msg, VerifyResult):
            if self.on_case_change is not None:
                self.on_case_change(case_id)
            msg = msg.model_copy(
                update={
                    "scores": {},
                    "reasons": [],
                    "details": [],
                    "thresholds": {},
                    "best_frame_url": None,
                    "reference_url": None,
                }
            )
        self.hub.send(customer_key(case_id), msg)

    # ---- co-browsing (issue 6: cases/cobrowse_desk.py does the work) -----------------------

    def _cobrowse_desk(self, ref: str) -> CobrowseDesk:
        if self.cobrowse is None:
            raise ProtocolError(ErrorCode.BAD_STATE, "co-browsing is not enabled", ref)
        return self.cobrowse

    @staticmethod
    def _cobrowse_target(call: Call) -> CobrowseTarget:
        case = call.case
        return CobrowseTarget(
            case.public_id,
            case.id,
            call.advisor_id,
            call.advisor_name,
            customer_key(case.public_id),
            advisor_key(call.advisor_id),
        )

    # ---- drops after the grace period ----------------------------------------------------

    async def _drop_customer(self, case_id: str) -> None:
        if self.hub.is_connected(customer_key(case_id)):
            return
        call = self._calls.get(case_id)
        if call is not None:
            await self.end_call(call, "system", "customer_disconnected")
        elif case_id in self.queue:
            # The case leaves the queue only once the database says so (with its event): a
            # write that fails even after retries leaves it waiting, and the drop is tried
            # again after another grace period — never out of both the queue and the log.
            try:
                await retry_transient(lambda: self.cases.move(case_id, CaseState.ABANDONED))
            except CaseError:
                pass  # no longer queued in the database (moved on meanwhile)
            except SQLAlchemyError:
                log.exception(
                    "could not abandon a dropped case; trying again later",
                    extra={"case_id": case_id},
                )
                self.customer_disconnected(case_id)
                return
            self.queue.remove(case_id)
            self._broadcast_queue()

    async def _drop_advisor(self, staff_id: int) -> None:
        if self.hub.is_connected(advisor_key(staff_id)):
            return
        self._advisors.pop(staff_id, None)
        case_id = self._advisor_call.get(staff_id)
        if case_id is not None:
            await self.end_call(self._calls[case_id], "system", "advisor_disconnected")
        self.presence.move(staff_id, PresenceStatus.OFFLINE)
        self._broadcast_queue()

    async def shutdown(self) -> None:
        """End every call (the server is stopping) and cancel every timer."""
        await self._grace.aclose()
        for call in list(self._calls.values()):
            await self.end_call(call, "system", "server_shutdown")
