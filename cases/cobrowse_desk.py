"""The co-browse desk: one session per call, routing, the guard on the relay, the stored stream.

The live desk hands it the co-browse messages of a call's two sides (who is who is the live
desk's business: a customer only reaches their own case, an advisor only their own call). The
customer's rrweb events pass :class:`cases.cobrowse.EventGuard` before they reach the advisor or
the stored stream. When co-browsing stops (either side, or the call ends) both sides are told at
once, then the stream goes into the blob store with a ``cobrowse.stored`` audit event.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from cases.artifacts import COBROWSE_STORED
from cases.cobrowse import (
    MAX_STREAM_BYTES,
    CobrowseState,
    EventGuard,
    StoredStream,
    check_cobrowse_move,
)
from cases.errors import InvalidTransition
from signaling.hub import Hub
from signaling.messages import (
    ClientMessage,
    CobrowseAccept,
    CobrowseDecline,
    CobrowseDraw,
    CobrowseDrawOut,
    CobrowseEvents,
    CobrowseEventsOut,
    CobrowseHighlight,
    CobrowseHighlightOut,
    CobrowsePointer,
    CobrowsePointerOut,
    CobrowseRequest,
    CobrowseSnapshot,
    CobrowseSnapshotAsk,
    CobrowseStateMsg,
    CobrowseStop,
    ErrorCode,
    ProtocolError,
)
from store.audit import add_event
from store.blobs import BlobStore
from store.db import Database

log = logging.getLogger(__name__)

STARTED, STOPPED, DROPPED = "cobrowse.started", "cobrowse.stopped", "cobrowse.dropped"
LOGGED_DROPS = 20  # per session: each of the first drops is logged, then only the summary
Actor = Literal["customer", "staff", "system"]


class CobrowseRecords(Protocol):
    """Where co-browse facts go: the blob store and the audit log (:class:`AuditedRecords`)."""

    async def put(self, data: bytes) -> str:
        """Store bytes; their SHA-256 hex."""
        ...

    async def event(
        self, case_id: int, action: str, actor: Actor, actor_id: int | None, detail: dict[str, Any]
    ) -> None:
        """Add one audit event to the case."""
        ...


class AuditedRecords:
    """:class:`CobrowseRecords` over the real blob store and hash-chained audit log."""

    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self._db = db
        self._blobs = blobs

    async def put(self, data: bytes) -> str:
        """Store ``data`` in the blob store (off the loop); its key."""
        return await self._blobs.put(data)

    async def event(
        self, case_id: int, action: str, actor: Actor, actor_id: int | None, detail: dict[str, Any]
    ) -> None:
        """One audit event in its own transaction."""
        async with self._db.session() as s, s.begin():
            await add_event(
                s,
                action=action,
                outcome="ok",
                actor_kind=actor,
                actor_id=actor_id,
                case_id=case_id,
                detail=detail,
            )


@dataclass(frozen=True, slots=True)
class CobrowseTarget:
    """The call a co-browse message belongs to, as the live desk knows it."""

    case_id: str  # public id
    case_db_id: int
    advisor_id: int
    advisor_name: str
    customer_key: str
    advisor_key: str


@dataclass(slots=True)
class Session:
    """Co-browsing in one call (mutable: its state moves)."""

    target: CobrowseTarget
    state: CobrowseState = CobrowseState.OFF
    guard: EventGuard = field(default_factory=EventGuard)
    stream: StoredStream | None = None
    relayed: int = 0

    def move(self, wanted: CobrowseState, ref: str) -> None:
        """Change state through the table; a refused move is a ``bad_state`` error."""
        try:
            check_cobrowse_move(self.state, wanted)
        except InvalidTransition as err:
            raise ProtocolError(ErrorCode.BAD_STATE, str(err), ref) from err
        self.state = wanted


class CobrowseDesk:
    """Co-browse sessions of this node's calls."""

    def __init__(
        self, hub: Hub, records: CobrowseRecords | None, max_stream_bytes: int = MAX_STREAM_BYTES
    ) -> None:
        self.hub = hub
        self.records = records
        self.max_stream_bytes = max_stream_bytes
        self._sessions: dict[str, Session] = {}

    def state(self, case_id: str) -> CobrowseState:
        """Where co-browsing stands in a call."""
        session = self._sessions.get(case_id)
        return session.state if session is not None else CobrowseState.OFF

    def _session(self, target: CobrowseTarget) -> Session:
        session = self._sessions.get(target.case_id)
        if session is None:
            session = self._sessions[target.case_id] = Session(target)
        return session

    # ---- messages ------------------------------------------------------------------------

    async def from_customer(self, target: CobrowseTarget, msg: ClientMessage) -> None:
        """A customer's co-browse message; raises :class:`ProtocolError` to refuse it."""
        session = self._session(target)
        match msg:
            case CobrowseEvents(events=events):
                self._need_on(session, msg.type)
                self._relay(session, events)
            case CobrowseAccept():
                session.move(CobrowseState.ON, msg.type)
                await self._started(session)
            case CobrowseDecline():
                session.move(CobrowseState.OFF, msg.type)
                self._tell(session, "declined")
            case CobrowseStop():
                await self.stop(session, "stopped_by_customer", msg.type)
            case _:
                raise ProtocolError(ErrorCode.FORBIDDEN, "customers may not do this", msg.type)

    async def from_advisor(self, target: CobrowseTarget, msg: ClientMessage) -> None:
        """An advisor's co-browse message; raises :class:`ProtocolError` to refuse it."""
        session = self._session(target)
        name = target.advisor_name
        match msg:
            case CobrowseRequest():
                session.move(CobrowseState.REQUESTED, msg.type)
                self._tell(session)
            case CobrowseStop():
                await self.stop(session, "stopped_by_advisor", msg.type)
            case CobrowseSnapshot():
                self._need_on(session, msg.type)
                self.hub.send(target.customer_key, CobrowseSnapshotAsk())
            case CobrowsePointer(x=x, y=y):
                self._need_on(session, msg.type)
                self.hub.send(target.customer_key, CobrowsePointerOut(x=x, y=y, name=name))
            case CobrowseHighlight(node_id=node_id, selector=selector):
                self._need_on(session, msg.type)
                out = CobrowseHighlightOut(node_id=node_id, selector=selector, name=name)
                self.hub.send(target.customer_key, out)
            case CobrowseDraw(points=points):
                self._need_on(session, msg.type)
                self.hub.send(target.customer_key, CobrowseDrawOut(points=points, name=name))
            case _:
                raise ProtocolError(ErrorCode.FORBIDDEN, "advisors may not do this", msg.type)

    @staticmethod
    def _need_on(session: Session, ref: str) -> None:
        if session.state is not CobrowseState.ON:
            raise ProtocolError(
                ErrorCode.BAD_STATE, f'co-browsing is "{session.state}", not "on"', ref
            )

    def _tell(self, session: Session, reason: str | None = None) -> None:
        t = session.target
        msg = CobrowseStateMsg(
            state=session.state.value, advisor_name=t.advisor_name, reason=reason
        )
        self.hub.send(t.customer_key, msg)
        self.hub.send(t.advisor_key, msg)

    def resync(self, case_id: str) -> None:
        """Tell a customer's (reloaded) page where co-browsing stands in their call."""
        session = self._sessions.get(case_id)
        if session is not None and session.state is not CobrowseState.OFF:
            t = session.target
            msg = CobrowseStateMsg(state=session.state.value, advisor_name=t.advisor_name)
            self.hub.send(t.customer_key, msg)

    # ---- the relay -----------------------------------------------------------------------

    def _relay(self, session: Session, events: Sequence[dict[str, Any]]) -> None:
        passed: list[dict[str, Any]] = []
        for event in events:
            verdict = session.guard.check(event)
            if verdict.reason is not None:
                self._dropped(session, verdict.reason, verdict.size)
                continue
            passed.append(event)
            stream = session.stream
            if (
                stream is not None
                and not stream.full
                and not stream.add(verdict.line, verdict.size)
            ):
                # The first part stays stored (marked truncated); the relay goes on.
                log.warning(
                    "co-browse stream over %d bytes: the rest is not stored",
                    stream.max_bytes,
                    extra={"case_id": session.target.case_id},
                )
        if passed:
            session.relayed += len(passed)
            self.hub.send(session.target.advisor_key, CobrowseEventsOut(events=passed))

    @staticmethod
    def _dropped(session: Session, reason: str, size: int) -> None:
        total = sum(session.guard.dropped.values())
        if total <= LOGGED_DROPS:
            # Never the event itself: it is what must not be seen.
            log.warning(
                "co-browse event dropped (%s, %d bytes)",
                reason,
                size,
                extra={"case_id": session.target.case_id},
            )

    # ---- start, stop, store --------------------------------------------------------------

    async def _started(self, session: Session) -> None:
        session.guard = EventGuard()
        session.stream = StoredStream(datetime.now(UTC), self.max_stream_bytes)
        session.relayed = 0
        self._tell(session)
        t = session.target
        log.info("co-browsing on", extra={"case_id": t.case_id})
        if self.records is not None:
            await self.records.event(
                t.case_db_id, STARTED, "customer", None, {"advisor_id": t.advisor_id}
            )

    async def stop(self, session: Session, reason: str, ref: str = "cobrowse.stop") -> None:
        """Stop co-browsing: both sides are told first, then the stream is stored."""
        await self._halt(session, reason, ref)

    def _halt(self, session: Session, reason: str, ref: str) -> Coroutine[Any, Any, None]:
        """Turn sharing off and tell both sides (no await); what stores the stream."""
        was_on = session.state is CobrowseState.ON
        session.move(CobrowseState.OFF, ref)
        self._tell(session, reason)
        stream, session.stream = session.stream, None
        return self._finish(session, reason, stream) if was_on else _nothing()

    async def end(self, case_id: str) -> None:
        """The call ended: stop co-browsing if it is on or asked for, store, forget the call."""
        await self.halt(case_id)

    def halt(self, case_id: str) -> Coroutine[Any, Any, None]:
        """The call ended: stop co-browsing at once — both sides told, the call forgotten,
        before this returns — and give back what stores the stream, to await later (the
        live desk tells both sides of the call's end before it stores anything)."""
        session = self._sessions.pop(case_id, None)
        if session is None or session.state is CobrowseState.OFF:
            return _nothing()
        return self._halt(session, "call_ended", "cobrowse.stop")

    async def _finish(self, session: Session, reason: str, stream: StoredStream | None) -> None:
        t, dropped = session.target, session.guard.dropped
        log.info(
            "co-browsing off (%s): %d events relayed, %d dropped",
            reason,
            session.relayed,
            sum(dropped.values()),
            extra={"case_id": t.case_id},
        )
        if self.records is None:
            return
        actor: Actor = "staff" if reason == "stopped_by_advisor" else "customer"
        if reason == "call_ended":
            actor = "system"
        actor_id = t.advisor_id if actor == "staff" else None
        if dropped:
            detail = {"count": sum(dropped.values()), "reasons": dict(sorted(dropped.items()))}
            await self.records.event(t.case_db_id, DROPPED, "system", None, detail)
        if stream is not None and stream.lines:
            data = stream.to_bytes()
            key = await self.records.put(data)
            detail = {
                "sha256": key,
                "events": len(stream.lines),
                "bytes": len(data),
                "started_at": stream.started_at.isoformat(),
                "truncated": stream.full,
            }
            await self.records.event(t.case_db_id, COBROWSE_STORED, "system", None, detail)
        stopped = {"reason": reason, "relayed": session.relayed}
        await self.records.event(t.case_db_id, STOPPED, actor, actor_id, stopped)

    async def shutdown(self) -> None:
        """Stop and store every session (the server is stopping)."""
        for case_id in list(self._sessions):
            await self.end(case_id)


async def _nothing() -> None:
    """An awaitable with nothing to do."""
