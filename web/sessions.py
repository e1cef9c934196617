"""Browser sessions: a random token in an HttpOnly cookie, its SHA-256 in the database.

Staff sessions carry the staff id, customer sessions the case they identified for. Every session
has its own CSRF token. Logging in or identifying rotates the token (no session fixation).
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiohttp import web
from sqlalchemy import delete, select

from store.db import Database
from store.models import WebSession
from web.forwarded import is_secure

COOKIE = "cb_session"


@dataclass(frozen=True, slots=True)
class Session:
    """The session of the current request."""

    id: int
    kind: str  # "staff" | "customer"
    staff_id: int | None
    case_id: int | None
    csrf_token: str


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _to_session(row: WebSession) -> Session:
    return Session(row.id, row.kind, row.staff_id, row.case_id, row.csrf_token)


class SessionStore:
    """Sessions in the database (shared by every node)."""

    def __init__(self, db: Database, lifetime: timedelta) -> None:
        self._db = db
        self._lifetime = lifetime

    async def load(self, token: str) -> Session | None:
        """The live session for a cookie token, or None."""
        if not token or len(token) > 128:
            return None
        async with self._db.session() as s:
            row = await s.scalar(select(WebSession).where(WebSession.token_sha256 == _hash(token)))
        if row is None or _aware(row.expires_at) <= datetime.now(UTC):
            return None
        return _to_session(row)

    async def create(
        self, kind: str, *, staff_id: int | None = None, case_id: int | None = None
    ) -> tuple[str, Session]:
        """A new session; returns the cookie token and the session."""
        token = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        async with self._db.session() as s, s.begin():
            row = WebSession(
                token_sha256=_hash(token),
                kind=kind,
                staff_id=staff_id,
                case_id=case_id,
                csrf_token=secrets.token_urlsafe(32),
                created_at=now,
                expires_at=now + self._lifetime,
            )
            s.add(row)
            await s.flush()
            return token, _to_session(row)

    async def alive(self, session_id: int) -> bool:
        """Whether the session still exists and has not expired (logout destroys it)."""
        async with self._db.session() as s:
            row = await s.get(WebSession, session_id)
        return row is not None and _aware(row.expires_at) > datetime.now(UTC)

    async def destroy(self, session_id: int) -> None:
        """End a session (logout, rotation); also sweeps expired ones."""
        async with self._db.session() as s, s.begin():
            await s.execute(delete(WebSession).where(WebSession.id == session_id))
            await s.execute(delete(WebSession).where(WebSession.expires_at < datetime.now(UTC)))


def _loopback_host(request: web.Request) -> bool:
    host = (request.host or "").rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def set_cookie(response: web.StreamResponse, request: web.Request, token: str, policy: str) -> None:
    """Attach the session cookie: HttpOnly, SameSite=Lax, Secure by policy.

    ``auto`` sets Secure over HTTPS and on loopback hosts (browsers accept Secure cookies from
    http://localhost), so a plain-HTTP demo on another host still works.
    """
    auto = is_secure(request) or _loopback_host(request)
    secure = policy == "always" or (policy == "auto" and auto)
    response.set_cookie(COOKIE, token, httponly=True, samesite="Lax", secure=secure, path="/")


def clear_cookie(response: web.StreamResponse) -> None:
    """Remove the session cookie."""
    response.del_cookie(COOKIE, path="/")


class SessionWake:
    """Wakes the watchers of a session's open sockets when the session ends in this process
    (logout), so that they re-check at once instead of at their next period."""

    def __init__(self) -> None:
        self._events: dict[int, set[asyncio.Event]] = {}

    def watch(self, session_id: int) -> asyncio.Event:
        """An event set when ``session_id`` ends here; give it back with :meth:`unwatch`."""
        event = asyncio.Event()
        self._events.setdefault(session_id, set()).add(event)
        return event

    def unwatch(self, session_id: int, event: asyncio.Event) -> None:
        """Forget a watcher."""
        events = self._events.get(session_id)
        if events is not None:
            events.discard(event)
            if not events:
                del self._events[session_id]

    def ended(self, session_id: int) -> None:
        """The session ended: wake its watchers."""
        for event in self._events.get(session_id, ()):
            event.set()
