"""The append-only audit log: what happened in a case, who did it, and with what outcome.

``add_event`` appends a row inside the caller's session, so that an operation and its event commit
or roll back together. No code updates or deletes ``audit_events``; a database trigger refuses it.

The log is hash-chained (``store.chain``): each event takes the next ``seq`` and the hash of the
event before it. Two transactions must not take the same link, so ``add_event`` first takes the
chain's lock, held until the caller's transaction ends: on PostgreSQL a transaction-level
advisory lock, on SQLite the database's write lock (one writer at a time). Only then does it
read the last event. A slip would still be loud: ``seq`` is unique. Call ``add_event`` late in
a transaction: every other transaction that appends waits for it to end.

``detail`` is JSON and must never carry a secret: keys that look like one (``pin``, ``password``,
``code``, ``otp``, ``id_number`` …) are refused with ``ValueError``, so that nobody logs one by
mistake. Values are the caller's responsibility: mask phone and ID numbers before passing them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from store.chain import GENESIS, ChainEvent, event_hash
from store.db import Database
from store.models import AuditEvent

ACTOR_KINDS = frozenset({"customer", "staff", "system"})
OUTCOMES = frozenset({"ok", "refused", "failed"})
MAX_LIST = 1000
# Words which, anywhere in a detail key, mean the value is (or may be) a secret.
_SECRET_WORDS = frozenset(
    {"pin", "pins", "password", "passwords", "passwd", "code", "codes", "otp", "secret", "cvv"}
)
_SECRET_JOINED = ("idnumber", "passcode", "pincode", "password")
_WORD_SPLIT = re.compile(r"[^a-z0-9]+")
# Any constant works: it only has to be the same on every node appending to the same database.
_PG_CHAIN_LOCK = 0x41756469


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit event as read back; ``detail`` is the decoded JSON object."""

    id: int
    at: datetime
    actor_kind: str
    actor_id: int | None
    case_id: int | None
    grant_id: int | None
    action: str
    outcome: str
    detail: Mapping[str, object] = field(default_factory=dict)
    seq: int = 0
    hash: str = ""


def _camel_to_snake(key: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key).lower()


def looks_secret(key: str) -> bool:
    """Whether a detail key names something that must never be logged (``new_pin``, ``otpCode``)."""
    snake = _camel_to_snake(key)
    words = {w for w in _WORD_SPLIT.split(snake) if w}
    squashed = re.sub(r"[^a-z0-9]", "", snake)
    return bool(words & _SECRET_WORDS) or any(j in squashed for j in _SECRET_JOINED)


def _check_keys(value: object, path: str = "") -> None:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            if not isinstance(key, str):
                raise ValueError(f"audit detail keys must be strings (at {path or 'top'})")
            if looks_secret(key):
                raise ValueError(f"audit detail key {path + key!r} looks like a secret")
            _check_keys(inner, f"{path}{key}.")
    elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
        for inner in value:
            _check_keys(inner, path)


def _json_default(value: object) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise ValueError(f"audit detail value of type {type(value).__name__} is not JSON")


def encode_detail(detail: Mapping[str, object] | None) -> str:
    """``detail`` as JSON with sorted keys; ``ValueError`` for secret-looking keys or non-JSON."""
    if not detail:
        return "{}"
    _check_keys(detail)
    return json.dumps(detail, sort_keys=True, ensure_ascii=False, default=_json_default)


async def _lock_chain(session: AsyncSession) -> None:
    """Hold the chain's lock until the session's transaction ends (see the module docstring)."""
    conn = await session.connection()
    dialect = conn.dialect.name
    if dialect == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_CHAIN_LOCK})
    elif dialect == "sqlite":
        # A write that touches no row (so the append-only trigger never fires) takes SQLite's
        # write lock; the driver opens the transaction before it. Holding the write lock, this
        # connection reads the newest data: in WAL mode a stale one could not have taken it.
        await conn.execute(text("UPDATE audit_events SET seq = seq WHERE 0"))
    else:
        raise NotImplementedError(f"no audit chain lock for {dialect}")


async def chain_head(session: AsyncSession) -> tuple[int, str]:
    """The ``seq`` and ``hash`` of the last event (0 and the genesis hash for an empty log)."""
    query = select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
    row = (await session.execute(query)).first()
    return (0, GENESIS) if row is None else (row.seq, row.hash)


async def add_event(
    session: AsyncSession,
    *,
    action: str,
    outcome: str,
    actor_kind: str,
    actor_id: int | None = None,
    case_id: int | None = None,
    grant_id: int | None = None,
    detail: Mapping[str, object] | None = None,
) -> AuditEvent:
    """Append one event to ``session``'s transaction, as the next link of the chain.

    It is written (and the chain's lock released) when the caller's transaction ends.
    """
    if actor_kind not in ACTOR_KINDS:
        raise ValueError(f"unknown actor kind {actor_kind!r}")
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}")
    if not action:
        raise ValueError("the action must not be empty")
    encoded = encode_detail(detail)
    await _lock_chain(session)
    last_seq, prev_hash = await chain_head(session)
    # The time is read under the lock, so that times never go backwards along the chain.
    link = ChainEvent(
        seq=last_seq + 1,
        at=datetime.now(UTC),
        actor_kind=actor_kind,
        actor_id=actor_id,
        case_id=case_id,
        grant_id=grant_id,
        action=action,
        outcome=outcome,
        detail=encoded,
        prev_hash=prev_hash,
    )
    fields = {**asdict(link), "hash": event_hash(prev_hash, link)}
    row = AuditEvent(**fields)
    session.add(row)
    await session.flush()
    return row


def _aware(value: datetime) -> datetime:
    # SQLite gives back naive datetimes; every time stored here is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _record(row: AuditEvent) -> AuditRecord:
    return AuditRecord(
        id=row.id,
        at=_aware(row.at),
        actor_kind=row.actor_kind,
        actor_id=row.actor_id,
        case_id=row.case_id,
        grant_id=row.grant_id,
        action=row.action,
        outcome=row.outcome,
        detail=json.loads(row.detail),
        seq=row.seq,
        hash=row.hash,
    )


async def list_events(
    db: Database, case_id: int | None = None, limit: int = 100
) -> list[AuditRecord]:
    """The latest ``limit`` events (of one case, or of all), newest first."""
    if not 1 <= limit <= MAX_LIST:
        raise ValueError(f"limit must be between 1 and {MAX_LIST}")
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if case_id is not None:
        query = query.where(AuditEvent.case_id == case_id)
    async with db.session() as s, s.begin():
        rows = (await s.scalars(query)).all()
    return [_record(row) for row in rows]
