"""Persistence of cases and chat: every state change is one transaction checked by the table."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cases.errors import CaseNotFound
from cases.review import open_review
from cases.services import check_service
from cases.states import CaseState, check_case_move
from store.audit import add_event
from store.db import Database, serialize
from store.models import AuditEvent, Case, ChatMessage, Customer


@dataclass(frozen=True, slots=True)
class CaseRef:
    """A case as the rest of the system sees it."""

    id: int
    public_id: str
    customer_id: int
    customer_name: str
    service: str
    state: CaseState
    lang: str
    elderly_mode: bool
    advisor_id: int | None
    queued_at: datetime | None


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """Which consent text the customer accepted."""

    version: str
    sha256: str


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; every time we store is UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _ref(case: Case, customer_name: str) -> CaseRef:
    return CaseRef(
        id=case.id,
        public_id=case.public_id,
        customer_id=case.customer_id,
        customer_name=customer_name,
        service=case.service,
        state=CaseState(case.state),
        lang=case.lang,
        elderly_mode=case.elderly_mode,
        advisor_id=case.advisor_id,
        queued_at=_aware(case.queued_at),
    )


async def _load(s: AsyncSession, public_id: str) -> tuple[Case, str]:
    row = (
        await s.execute(
            select(Case, Customer.name)
            .join(Customer, Customer.id == Case.customer_id)
            .where(Case.public_id == public_id)
            .with_for_update()
        )
    ).first()
    if row is None:
        raise CaseNotFound(f"no case {public_id!r}")
    return row[0], row[1]


def _stamp(case: Case, wanted: CaseState, now: datetime) -> None:
    match wanted:
        case CaseState.QUEUED:
            case.queued_at = now
        case CaseState.IN_CALL:
            case.call_started_at = now
        case CaseState.CLOSED:
            case.call_ended_at = now
            case.closed_at = now
        case CaseState.ABANDONED:
            case.closed_at = now
        case _:
            pass


async def _insert_case(
    s: AsyncSession, customer_id: int, service: str, lang: str, elderly: bool, now: datetime
) -> Case:
    """A new identified case and its ``case.opened`` event, in the caller's transaction."""
    case = Case(
        public_id=secrets.token_urlsafe(12),
        customer_id=customer_id,
        service=service,
        state=CaseState.IDENTIFIED.value,
        lang=lang,
        elderly_mode=elderly,
        created_at=now,
    )
    s.add(case)
    await s.flush()
    await add_event(
        s,
        action="case.opened",
        outcome="ok",
        actor_kind="customer",
        actor_id=customer_id,
        case_id=case.id,
        detail={"service": service, "lang": lang, "elderly": elderly},
    )
    return case


# The states a customer's new case supersedes: not yet in a call.
SUPERSEDABLE = (CaseState.IDENTIFIED, CaseState.CONSENTED, CaseState.QUEUED)


class CaseStore:
    """Cases in the database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def open(self, customer_id: int, service: str, lang: str, elderly: bool) -> CaseRef:
        """Open a case for an identified customer."""
        check_service(service)
        async with self._db.session() as s, s.begin():
            case = await _insert_case(s, customer_id, service, lang, elderly, _now())
            name = (await s.scalars(select(Customer.name).where(Customer.id == customer_id))).one()
            return _ref(case, name)

    async def get(self, public_id: str) -> CaseRef:
        """Load a case by its public id (raises :class:`CaseNotFound`)."""
        async with self._db.session() as s:
            case, name = await _load(s, public_id)
            return _ref(case, name)

    async def get_by_id(self, case_id: int) -> CaseRef:
        """Load a case by its row id (raises :class:`CaseNotFound`)."""
        async with self._db.session() as s:
            public_id = await s.scalar(select(Case.public_id).where(Case.id == case_id))
        if public_id is None:
            raise CaseNotFound(f"no case #{case_id}")
        return await self.get(public_id)

    async def move(
        self,
        public_id: str,
        wanted: CaseState,
        *,
        advisor_id: int | None = None,
        ended_by: str | None = None,
        consent: ConsentRecord | None = None,
    ) -> CaseRef:
        """Change a case's state in one transaction; an illegal move changes nothing."""
        async with self._db.session() as s, s.begin():
            case, name = await _load(s, public_id)
            check_case_move(CaseState(case.state), wanted)
            now = _now()
            case.state = wanted.value
            _stamp(case, wanted, now)
            if advisor_id is not None:
                case.advisor_id = advisor_id
            if ended_by is not None:
                case.ended_by = ended_by
            if consent is not None:
                case.consent_version = consent.version
                case.consent_sha256 = consent.sha256
                case.consented_at = now
            detail: dict[str, object] = {"state": wanted.value}
            if consent is not None:
                detail.update(consent_version=consent.version, consent_sha256=consent.sha256)
            if ended_by is not None:
                detail["ended_by"] = ended_by
            staff = advisor_id if wanted is CaseState.IN_CALL else None
            if wanted is CaseState.CLOSED:
                await open_review(s, case)
            await add_event(
                s,
                action=f"case.{wanted.value}",
                outcome="ok",
                actor_kind="staff" if staff is not None else "system",
                actor_id=staff,
                case_id=case.id,
                detail=detail,
            )
            return _ref(case, name)

    async def open_alone(
        self, customer_id: int, service: str, lang: str, elderly: bool
    ) -> tuple[CaseRef, tuple[str, ...]]:
        """Open a case for an identified customer and, in the same transaction, abandon their
        other cases that have not reached a call (identified, consented or waiting in the
        queue): one customer holds one place at a time, whatever the windows or devices.

        Returns the new case and the public ids of the cases it superseded (the live desk
        takes them out of the queue and closes their sockets). A case in a call is left alone.
        """
        check_service(service)
        async with self._db.session() as s, s.begin():
            await serialize(s, [f"customer-cases:{customer_id}"])
            now = _now()
            # Written first: SQLite's writer lock is held from here.
            case = await _insert_case(s, customer_id, service, lang, elderly, now)
            earlier = (
                await s.scalars(
                    select(Case)
                    .where(
                        Case.customer_id == customer_id,
                        Case.id != case.id,
                        Case.state.in_([st.value for st in SUPERSEDABLE]),
                    )
                    .order_by(Case.id)
                    .with_for_update()
                )
            ).all()
            for old in earlier:
                check_case_move(CaseState(old.state), CaseState.ABANDONED)
                old.state = CaseState.ABANDONED.value
                old.ended_by = "customer"
                _stamp(old, CaseState.ABANDONED, now)
                await add_event(
                    s,
                    action="case.abandoned",
                    outcome="ok",
                    actor_kind="customer",
                    actor_id=customer_id,
                    case_id=old.id,
                    detail={"state": "abandoned", "superseded_by": case.public_id},
                )
            name = (await s.scalars(select(Customer.name).where(Customer.id == customer_id))).one()
            return _ref(case, name), tuple(old.public_id for old in earlier)

    async def add_chat(self, case_id: int, sender: str, text: str) -> datetime:
        """Store a chat message; returns its time."""
        now = _now()
        async with self._db.session() as s, s.begin():
            s.add(ChatMessage(case_id=case_id, sender=sender, text=text, sent_at=now))
            # The text stays in chat_messages (the auditor's view joins it); the log keeps that
            # a message was sent, by whom and how long, so a deleted message shows.
            await add_event(
                s,
                action="chat.message",
                outcome="ok",
                actor_kind="customer" if sender == "customer" else "staff",
                case_id=case_id,
                detail={"sender": sender, "chars": len(text)},
            )
        return now

    async def waiting(self) -> list[CaseRef]:
        """The cases waiting in the queue, first in line first (to restore the live queue
        after a restart: each customer then has the reconnect grace to come back)."""
        async with self._db.session() as s:
            rows = (
                await s.execute(
                    select(Case, Customer.name)
                    .join(Customer, Customer.id == Case.customer_id)
                    .where(Case.state == CaseState.QUEUED)
                    .order_by(Case.queued_at, Case.id)
                )
            ).all()
        return [_ref(case, name) for case, name in rows]

    async def record_device_check(self, case_id: int, result: dict[str, str]) -> bool:
        """Keep what the customer's device check found (``camera``, ``mic``, ``network``) as an
        audit event of the case; whether it passed (the camera works: a call needs video)."""
        passed = result.get("camera") == "ok"
        async with self._db.session() as s, s.begin():
            await add_event(
                s,
                action="device.checked",
                outcome="ok" if passed else "refused",
                actor_kind="customer",
                case_id=case_id,
                detail=dict(result),
            )
        return passed

    async def device_check_passed(self, case_id: int) -> bool:
        """Whether the case's latest device check passed."""
        async with self._db.session() as s:
            outcome = await s.scalar(
                select(AuditEvent.outcome)
                .where(AuditEvent.case_id == case_id, AuditEvent.action == "device.checked")
                .order_by(AuditEvent.seq.desc())
                .limit(1)
            )
        return outcome == "ok"

    async def recover(self) -> int:
        """After a restart no call survives (its media were in the dead process): close the
        cases left in a call. Waiting customers keep their cases: see :meth:`waiting`."""
        count = 0
        async with self._db.session() as s, s.begin():
            rows = await s.scalars(select(Case).where(Case.state == CaseState.IN_CALL))
            now = _now()
            for case in rows.all():
                wanted = CaseState.CLOSED
                case.state = wanted.value
                case.ended_by = "system"
                _stamp(case, wanted, now)
                await open_review(s, case)
                await add_event(
                    s,
                    action=f"case.{wanted.value}",
                    outcome="ok",
                    actor_kind="system",
                    case_id=case.id,
                    detail={"state": wanted.value, "ended_by": "system", "reason": "restart"},
                )
                count += 1
        return count
