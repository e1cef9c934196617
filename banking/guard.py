"""How every banking operation is guarded: grants checked and consumed, refusals audited.

A grant (issued by ``cases.grants``) is consumed by one conditional UPDATE in the same transaction
as the record change and its audit event: of two concurrent submissions exactly one updates the
row. When the UPDATE matches nothing a second SELECT finds the reason for the message.

A refused operation rolls back, then writes a ``refused`` audit event in a transaction of its own
(``refusals_audited``), then raises.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from banking.errors import GrantRefused, OperationRefused
from store.audit import add_event
from store.db import Database
from store.models import Grant

log = logging.getLogger(__name__)

# Service codes, as ``cases.services.SERVICES`` names them (banking never imports cases).
PIN_CHANGE = "pin_change"
CARD_LOSS = "card_loss"
PHONE_CHANGE = "phone_change"
UKEY_RESET = "ukey_reset"
_MAX_PUBLIC_ID = 64


def utcnow() -> datetime:
    """The current time, aware, in UTC (the only zone stored)."""
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """SQLite returns naive datetimes; every time stored is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class GrantRef:
    """The grant a caller presents, and what it must be bound to."""

    public_id: str = field(repr=False)
    case_id: int
    customer_id: int
    service: str


def _valid(ref: GrantRef, now: datetime) -> tuple[ColumnElement[bool], ...]:
    return (
        Grant.public_id == ref.public_id,
        Grant.case_id == ref.case_id,
        Grant.customer_id == ref.customer_id,
        Grant.service == ref.service,
        Grant.used_at.is_(None),
        Grant.revoked_at.is_(None),
        Grant.expires_at > now,
    )


def _plausible(ref: GrantRef) -> bool:
    return 0 < len(ref.public_id) <= _MAX_PUBLIC_ID


def _reason(row: Grant | None, ref: GrantRef, now: datetime) -> str:
    # Binding first: a caller learns nothing about the state of somebody else's grant.
    if row is None:
        return "no_grant"
    if row.case_id != ref.case_id:
        return "wrong_case"
    if row.customer_id != ref.customer_id:
        return "wrong_customer"
    if row.service != ref.service:
        return "wrong_service"
    if row.revoked_at is not None:
        return "revoked"
    if row.used_at is not None:
        return "used"
    if aware(row.expires_at) <= now:
        return "expired"
    return "used"  # valid again after a failed UPDATE cannot happen; "used" is the safe answer


async def grant_refusal(session: AsyncSession, ref: GrantRef, now: datetime) -> GrantRefused:
    """Why ``ref`` is not valid now; ``grant_id`` on the error is the row's id when one exists."""
    row = None
    if _plausible(ref):
        row = await session.scalar(select(Grant).where(Grant.public_id == ref.public_id))
    err = GrantRefused(_reason(row, ref, now))
    err.grant_id = row.id if row is not None else None
    return err


async def check_grant(db: Database, ref: GrantRef) -> int:
    """The id of the valid grant ``ref`` names (not consumed), or ``GrantRefused``."""
    now = utcnow()
    async with db.session() as s, s.begin():
        grant_id = None
        if _plausible(ref):
            grant_id = await s.scalar(select(Grant.id).where(*_valid(ref, now)))
        if grant_id is None:
            raise await grant_refusal(s, ref, now)
    return grant_id


async def consume_grant(session: AsyncSession, ref: GrantRef, now: datetime) -> int:
    """Mark the grant used inside the caller's transaction and return its id.

    Raises ``GrantRefused`` (the caller's transaction then rolls back) when no row was updated.
    """
    if _plausible(ref):
        statement = update(Grant).where(*_valid(ref, now)).values(used_at=now).returning(Grant.id)
        result = await session.execute(statement, execution_options={"synchronize_session": False})
        grant_id = result.scalar_one_or_none()
        if grant_id is not None:
            return grant_id
    raise await grant_refusal(session, ref, now)


async def revoke_grant(session: AsyncSession, grant_id: int, now: datetime) -> None:
    """Revoke a grant that is still unused (inside the caller's transaction)."""
    await session.execute(
        update(Grant)
        .where(Grant.id == grant_id, Grant.used_at.is_(None), Grant.revoked_at.is_(None))
        .values(revoked_at=now),
        execution_options={"synchronize_session": False},
    )


async def audit_ok(
    session: AsyncSession,
    action: str,
    *,
    case_id: int,
    customer_id: int,
    grant_id: int | None,
    detail: dict[str, object],
) -> None:
    """The ``ok`` event of an operation, inside its transaction."""
    await add_event(
        session,
        action=action,
        outcome="ok",
        actor_kind="customer",
        actor_id=customer_id,
        case_id=case_id,
        grant_id=grant_id,
        detail=detail,
    )


@dataclass(slots=True)
class Trail:
    """What an operation learnt before it was refused, for the refusal's audit event."""

    grant_id: int | None = None
    recorded: bool = False  # the refusal's event was already written with its record change


def refusal_detail(err: OperationRefused) -> dict[str, object]:
    """The audit detail of a refusal: its code, field and detail (never a value)."""
    detail: dict[str, object] = {"refusal": err.code, **err.detail}
    if err.field is not None:
        detail["field"] = err.field
    return detail


async def _record_refusal(
    db: Database, err: OperationRefused, action: str, case_id: int, customer_id: int, trail: Trail
) -> None:
    grant_id = trail.grant_id
    if grant_id is None and isinstance(err, GrantRefused):
        grant_id = err.grant_id
    async with db.session() as s, s.begin():
        await add_event(
            s,
            action=action,
            outcome="refused",
            actor_kind="customer",
            actor_id=customer_id,
            case_id=case_id,
            grant_id=grant_id,
            detail=refusal_detail(err),
        )


@asynccontextmanager
async def refusals_audited(
    db: Database, action: str, *, case_id: int, customer_id: int
) -> AsyncIterator[Trail]:
    """Write a ``refused`` audit event for an ``OperationRefused`` leaving the block, re-raise it.

    The block's own transactions have rolled back by then: the event has a transaction of its own.
    """
    trail = Trail()
    try:
        yield trail
    except OperationRefused as err:
        log.info("%s refused: %s", action, err.code, extra={"case_id": case_id})
        if not trail.recorded:
            await _record_refusal(db, err, action, case_id, customer_id, trail)
        raise
