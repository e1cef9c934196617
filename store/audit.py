"""The append-only audit log: what happened in a case, who did it, and with what outcome.

``add_event`` appends a row inside the caller's session, so that an operation and its event commit
or roll back together. No code updates or deletes ``audit_events``; a database trigger refuses it.

``detail`` is JSON and must never carry a secret: keys that look like one (``pin``, ``password``,
``code``, ``otp``, ``id_number`` …) are refused with ``ValueError``, so that nobody logs one by
mistake. Values are the caller's responsibility: mask phone and ID numbers before passing them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

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


def add_event(
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
    """Append one event to ``session`` (written when the caller's transaction commits)."""
    if actor_kind not in ACTOR_KINDS:
        raise ValueError(f"unknown actor kind {actor_kind!r}")
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}")
    if not action:
        raise ValueError("the action must not be empty")
    row = AuditEvent(
        at=datetime.now(UTC),
        actor_kind=actor_kind,
        actor_id=actor_id,
        case_id=case_id,
        grant_id=grant_id,
        action=action,
        outcome=outcome,
        detail=encode_detail(detail),
    )
    session.add(row)
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
