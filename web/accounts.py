"""Staff accounts: creation, password verification (argon2id), lookup.

Hashing is CPU work (about 64 MiB and tens of milliseconds per hash): it always runs in a worker
thread, never on the event loop.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from banking import hashing
from store.audit import add_event
from store.db import Database
from store.models import Staff

log = logging.getLogger(__name__)

ROLES = ("advisor", "supervisor", "auditor", "admin")
MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 1024
_USERNAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{1,63}")
# Verified against when the username is unknown, so that the answer takes as long as for a known
# one. Same parameters as PasswordHasher() defaults (a test checks that they still agree).
_DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$R25r9KM6elWcDvzp+CtjUg"
    "$oQdq3H3ABHPDu2Kmw5PLUxMNeFgrM8UfrBW/NMILj3s"
)


class AccountError(ValueError):
    """A staff account cannot be created as asked."""


class UnknownRole(AccountError):
    """The role is not one of ``ROLES``."""


class WeakPassword(AccountError):
    """The password is too short (or absurdly long)."""


class InvalidUsername(AccountError):
    """The username is not 2–64 characters of ``a-z 0-9 _ . -``."""


class DuplicateUsername(AccountError):
    """Another staff member already has this username."""


class UnknownStaff(AccountError):
    """No staff member has this username."""


@dataclass(frozen=True, slots=True)
class StaffRef:
    """What the app knows about a logged-in member of staff."""

    id: int
    username: str
    display_name: str
    role: str


def _hasher() -> PasswordHasher:
    return PasswordHasher()  # argon2id, RFC 9106 low-memory profile


def _ref(row: Staff) -> StaffRef:
    return StaffRef(row.id, row.username, row.display_name, row.role)


def normalise_username(raw: str) -> str:
    """Usernames are compared trimmed and lower-cased."""
    return raw.strip().lower()


def _check_new_account(username: str, display_name: str, password: str, role: str) -> None:
    if not _USERNAME_RE.fullmatch(username):
        raise InvalidUsername("username must be 2-64 characters of a-z, 0-9, _ . -")
    if not display_name.strip():
        raise AccountError("display name must not be empty")
    if role not in ROLES:
        raise UnknownRole(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD_CHARS:
        raise WeakPassword(f"password must have at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise WeakPassword(f"password must have at most {MAX_PASSWORD_CHARS} characters")


async def create_staff(
    db: Database, username: str, display_name: str, password: str, role: str
) -> StaffRef:
    """Create an active staff account; ``AccountError`` subclasses say what is wrong."""
    username = normalise_username(username)
    _check_new_account(username, display_name, password, role)
    password_hash = await hashing.run(_hasher().hash, password)
    row = Staff(
        username=username,
        display_name=display_name.strip(),
        password_hash=password_hash,
        role=role,
        active=True,
        created_at=datetime.now(UTC),
    )
    try:
        async with db.session() as s, s.begin():
            s.add(row)
    except IntegrityError as err:
        raise DuplicateUsername(f"username {username!r} is taken") from err
    log.info("staff account created", extra={"staff_id": row.id, "role": role})
    return _ref(row)


def _verify_sync(password_hash: str, password: str) -> tuple[bool, bool]:
    """(password matches, hash should be upgraded to current parameters)."""
    hasher = _hasher()
    try:
        hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False, False
    return True, hasher.check_needs_rehash(password_hash)


async def _rehash(db: Database, staff_id: int, password: str) -> None:
    new_hash = await hashing.run(_hasher().hash, password)
    async with db.session() as s, s.begin():
        row = await s.get(Staff, staff_id)
        if row is not None:
            row.password_hash = new_hash


async def verify_staff(db: Database, username: str, password: str) -> StaffRef | None:
    """The active staff member with these credentials, or None.

    Unknown usernames cost the same argon2 work as known ones (verified against a dummy hash),
    so response time does not tell which usernames exist.
    """
    if len(password) > MAX_PASSWORD_CHARS:
        return None
    async with db.session() as s, s.begin():
        row = await s.scalar(select(Staff).where(Staff.username == normalise_username(username)))
    stored = row.password_hash if row is not None else _DUMMY_HASH
    ok, needs_rehash = await hashing.run(_verify_sync, stored, password, refuse_when_busy=True)
    if row is None or not ok or not row.active:
        return None
    if needs_rehash:
        await _rehash(db, row.id, password)
    return _ref(row)


async def get_staff(db: Database, staff_id: int) -> StaffRef | None:
    """The active staff member with this id, or None (a deactivated account resolves to None,
    so its open sessions stop working)."""
    async with db.session() as s, s.begin():
        row = await s.get(Staff, staff_id)
    return None if row is None or not row.active else _ref(row)


async def change_staff(
    db: Database, username: str, *, active: bool | None = None, role: str | None = None
) -> StaffRef:
    """Deactivate (or reactivate) an account, or give it another role; an audit event says
    who was changed and how. Open sessions and sockets of the account stop working: pages and
    the API look the account up on every request, its sockets are re-checked (web.ws)."""
    if role is not None and role not in ROLES:
        raise UnknownRole(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    username = normalise_username(username)
    async with db.session() as s, s.begin():
        row = await s.scalar(select(Staff).where(Staff.username == username))
        if row is None:
            raise UnknownStaff(f"no staff member is called {username!r}")
        before = {"active": row.active, "role": row.role}
        if active is not None:
            row.active = active
        if role is not None:
            row.role = role
        await add_event(
            s,
            action="staff.changed",
            outcome="ok",
            actor_kind="system",
            detail={
                "staff_id": row.id,
                "before": before,
                "after": {"active": row.active, "role": row.role},
            },
        )
    log.info("staff account changed", extra={"staff_id": row.id, "role": row.role})
    return _ref(row)
