"""The WebSocket endpoint: one socket per browser, authenticated by its session.

Each frame is parsed by the signaling codec and handed to the live desk; a refused message gets
an ``error`` message with a code and the socket stays usable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from aiohttp import WSMsgType, web
from sqlalchemy.exc import SQLAlchemyError

from cases.errors import CaseNotFound
from cases.pages_access import CUSTOMER_SOCKET_STATES
from signaling.hub import Close, Connection
from signaling.messages import (
    COBROWSE_MAX_BYTES,
    ApprovalDecide,
    ErrorCode,
    ErrorMessage,
    GrantConfirm,
    GrantDecline,
    ProtocolError,
    Welcome,
)
from web.accounts import get_staff
from web.keys import (
    AUTHORISE,
    CALLS,
    CASES,
    DB,
    DESK,
    HUB,
    SESSION_WAKE,
    SESSIONS,
    SETTINGS,
    session_of,
)
from web.middleware import json_error

log = logging.getLogger(__name__)

CONSOLE_ROLES = frozenset({"advisor", "supervisor"})
# Close codes the page does not reconnect after (4400-4499, see static/js/common.js).
CLOSE_SIGNED_OUT = 4401  # the staff session ended, the account was deactivated, its role changed
CLOSE_TOO_MANY = 4429
STAFF_RECHECK_SECONDS = 5.0


@dataclass(slots=True)
class TokenBucket:
    """Messages per second a socket may send (burst ``capacity``)."""

    rate: float
    capacity: float
    tokens: float = 0.0
    stamp: float = 0.0

    def take(self) -> bool:
        """Spend one token; False when the socket is sending too fast."""
        now = time.monotonic()
        if self.stamp == 0.0:
            self.tokens, self.stamp = self.capacity, now
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass(frozen=True, slots=True)
class Peer:
    """Who is on the socket."""

    role: str  # "customer" | "advisor"
    principal: str
    name: str
    case_id: str | None = None
    staff_id: int | None = None
    staff_role: str | None = None
    session_id: int | None = None  # staff: the session whose end closes the socket


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser: the session cookie still has to be valid
    return origin.split("://", 1)[-1] == request.host


async def _identify_peer(request: web.Request) -> Peer:
    session = session_of(request)
    if session is None:
        raise web.HTTPUnauthorized(text="no session")
    if session.kind == "customer" and session.case_id is not None:
        try:
            case = await request.app[CASES].get_by_id(session.case_id)
        except CaseNotFound as err:
            raise web.HTTPUnauthorized(text="case not found") from err
        if case.state not in CUSTOMER_SOCKET_STATES:
            raise web.HTTPForbidden(text=f'case is in state "{case.state}"')
        key = f"customer:{case.public_id}"
        return Peer("customer", key, case.customer_name, case_id=case.public_id)
    if session.kind == "staff" and session.staff_id is not None:
        staff = await get_staff(request.app[DB], session.staff_id)
        if staff is None or staff.role not in CONSOLE_ROLES:
            raise web.HTTPForbidden(text="this role has no live console")
        principal = f"advisor:{staff.id}"
        return Peer(
            "advisor",
            principal,
            staff.display_name,
            staff_id=staff.id,
            staff_role=staff.role,
            session_id=session.id,
        )
    raise web.HTTPUnauthorized(text="identify or log in first")


async def websocket(request: web.Request) -> web.StreamResponse:
    """``GET /ws``: upgrade, welcome, then dispatch every frame to the live desk."""
    if not _same_origin(request):
        return json_error(403, "bad_origin", "cross-site WebSocket refused")
    try:
        peer = await _identify_peer(request)
    except web.HTTPException as exc:
        return json_error(exc.status, "unauthorized", exc.text or "")
    if not request.app[HUB].has_room(peer.principal):
        return json_error(429, "too_many_sockets", "close another window of this session first")
    settings = request.app[SETTINGS]
    # aiohttp closes a socket on a frame over max_msg_size; keep that far above our own limit
    # so an oversized message gets an error message and the socket stays usable. Co-browse
    # event batches (a page's full snapshot) may be larger than other messages.
    largest = max(settings.signaling.max_message_bytes, COBROWSE_MAX_BYTES)
    ws = web.WebSocketResponse(heartbeat=25, max_msg_size=largest * 2)
    await ws.prepare(request)
    if not request.app[HUB].has_room(peer.principal):  # others upgraded meanwhile
        await ws.close(code=CLOSE_TOO_MANY, message=b"too many sockets")
        return ws
    conn = request.app[HUB].attach(peer.principal, ws.send_str, _closer(ws))
    watch = None
    if peer.session_id is not None:
        watch = asyncio.create_task(_watch_staff(request, ws, peer), name="ws-staff-watch")
    try:
        await _serve(request, ws, conn, peer)
    finally:
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        last = request.app[HUB].detach(conn)
        await conn.aclose()
        if last:
            _disconnected(request, peer)
    return ws


async def _staff_refusal(app: web.Application, peer: Peer) -> str | None:
    """Why a staff socket may stay open no longer, or None while it may."""
    assert peer.session_id is not None and peer.staff_id is not None
    if not await app[SESSIONS].alive(peer.session_id):
        return "signed out"
    staff = await get_staff(app[DB], peer.staff_id)
    if staff is None:
        return "account deactivated"
    if staff.role != peer.staff_role:
        return "role changed"
    return None


async def _watch_staff(request: web.Request, ws: web.WebSocketResponse, peer: Peer) -> None:
    """Close a staff socket once its session ends (logout here: at once; on another node, or
    the account deactivated or given another role: within STAFF_RECHECK_SECONDS)."""
    app = request.app
    assert peer.session_id is not None
    wake = app[SESSION_WAKE].watch(peer.session_id)
    try:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STAFF_RECHECK_SECONDS):
                    await wake.wait()
            wake.clear()
            try:
                reason = await _staff_refusal(app, peer)
            except SQLAlchemyError:
                log.warning("could not re-check a staff socket", exc_info=True)
                continue
            if reason is not None:
                log.info("closing a staff socket: %s", reason, extra={"staff_id": peer.staff_id})
                await ws.close(code=CLOSE_SIGNED_OUT, message=reason.encode())
                return
    finally:
        app[SESSION_WAKE].unwatch(peer.session_id, wake)


def _closer(ws: web.WebSocketResponse) -> Close:
    async def close(code: int, reason: str) -> None:
        await ws.close(code=code, message=reason.encode())

    return close


def _disconnected(request: web.Request, peer: Peer) -> None:
    desk = request.app[DESK]
    if peer.case_id is not None:
        desk.customer_disconnected(peer.case_id)
    elif peer.staff_id is not None:
        desk.advisor_disconnected(peer.staff_id)
        request.app[AUTHORISE].supervisor_disconnected(peer.staff_id)


async def _serve(
    request: web.Request, ws: web.WebSocketResponse, conn: Connection, peer: Peer
) -> None:
    app = request.app
    desk, codec = app[DESK], app[HUB].codec
    conn.push(
        Welcome(
            role="customer" if peer.role == "customer" else "advisor",
            name=peer.name,
            case_id=peer.case_id,
            ice_servers=app[CALLS].browser_ice_servers(),
            ice_loopback_only=app[SETTINGS].media.ice_loopback_only,
        )
    )
    if peer.case_id is not None:
        desk.customer_connected(peer.case_id)
    elif peer.staff_id is not None:
        desk.advisor_connected(peer.staff_id, peer.name)
        if peer.staff_role == "supervisor":
            await app[AUTHORISE].supervisor_connected(peer.staff_id)
    bucket = TokenBucket(rate=20.0, capacity=40.0)
    async for frame in ws:
        if frame.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            break
        try:
            if not bucket.take():
                raise ProtocolError(ErrorCode.RATE_LIMITED, "too many messages; slow down")
            msg = codec.parse(frame.data)
            if isinstance(msg, GrantConfirm | GrantDecline | ApprovalDecide):
                if peer.staff_id is None or peer.staff_role is None:
                    raise ProtocolError(ErrorCode.FORBIDDEN, "staff only", msg.type)
                await app[AUTHORISE].handle(peer.staff_id, peer.staff_role, msg)
            elif peer.case_id is not None:
                await desk.handle_customer(peer.case_id, msg)
            elif peer.staff_id is not None:
                await desk.handle_advisor(peer.staff_id, msg)
        except ProtocolError as err:
            conn.push(
                ErrorMessage(code=err.code, message=err.message, ref=err.ref, field=err.field)
            )
        except Exception:
            log.exception("error handling a message", extra={"principal": peer.principal})
            conn.push(ErrorMessage(code=ErrorCode.INTERNAL, message="internal error"))
