"""A small bank for service tests: customers, cases, a verified attempt, grants, snapshots.

Grants are inserted directly (``cases.grants`` issues them in the app).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from sqlalchemy import Row, select, update

from banking.core import NewCustomer
from banking.identity import luhn_check_digit, prc_id_check_char
from banking.secrets import hash_secret
from banking.sql import SqlCoreBanking
from store.audit import AuditRecord, list_events
from store.db import Database
from store.models import (
    Card,
    Case,
    Customer,
    Grant,
    Notification,
    PhoneOtp,
    Staff,
    Ukey,
    VerificationAttempt,
)
from tests.banking.images import image_bytes

# argon2id at the smallest cost: the policy is under test, not the cost (a test checks that the
# default SqlCoreBanking uses the full one).
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
PIN = "802613"  # the PIN every test card starts with
BIRTH = "19850612"
PHONE = "13800138000"
RECORD_TABLES = (Customer, Card, Ukey, Notification, Grant, PhoneOtp)


def id_number(seq: int, birth: str = BIRTH) -> str:
    first17 = f"310104{birth}{seq:03d}"
    return first17 + prc_id_check_char(first17)


def card_number(seq: int) -> str:
    first15 = f"6222021000{seq:05d}"
    return first15 + luhn_check_digit(first15)


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class World:
    """Customer ``alice`` (card with ``PIN``, phone ``PHONE``, locked U-key) in case ``case``;
    customer ``bob`` in ``bob_case``; ``other_case`` is a second case of alice."""

    db: Database
    banking: SqlCoreBanking
    alice: int
    bob: int
    case: int
    other_case: int
    bob_case: int
    staff: int
    attempt: int

    async def grant(
        self,
        service: str,
        *,
        case: int | None = None,
        customer: int | None = None,
        expires_in: timedelta = timedelta(minutes=5),
        used: bool = False,
        revoked: bool = False,
    ) -> str:
        """Insert a grant (for alice in ``case`` unless told otherwise); its public id."""
        public_id = secrets.token_urlsafe(24)
        at = now()
        row = Grant(
            public_id=public_id,
            case_id=case if case is not None else self.case,
            customer_id=customer if customer is not None else self.alice,
            service=service,
            attempt_id=self.attempt,
            confirmed_by=self.staff,
            created_at=at,
            expires_at=at + expires_in,
            used_at=at if used else None,
            revoked_at=at if revoked else None,
        )
        async with self.db.session() as s, s.begin():
            s.add(row)
        return public_id

    async def grant_row(self, public_id: str) -> Grant:
        async with self.db.session() as s:
            row = await s.scalar(select(Grant).where(Grant.public_id == public_id))
        assert row is not None
        return row

    async def cards(self, customer: int | None = None) -> list[Card]:
        who = customer if customer is not None else self.alice
        async with self.db.session() as s:
            return list(
                await s.scalars(select(Card).where(Card.customer_id == who).order_by(Card.id))
            )

    async def customer(self, customer: int | None = None) -> Customer:
        async with self.db.session() as s:
            row = await s.get(Customer, customer if customer is not None else self.alice)
        assert row is not None
        return row

    async def ukey(self) -> Ukey:
        async with self.db.session() as s:
            row = await s.scalar(select(Ukey).where(Ukey.customer_id == self.alice))
        assert row is not None
        return row

    async def outbox(self) -> list[Notification]:
        async with self.db.session() as s:
            return list(await s.scalars(select(Notification).order_by(Notification.id)))

    async def otps(self) -> list[PhoneOtp]:
        async with self.db.session() as s:
            return list(await s.scalars(select(PhoneOtp).order_by(PhoneOtp.id)))

    async def events(self, case: int | None = None) -> list[AuditRecord]:
        """Audit events of ``case`` (alice's case by default), oldest first."""
        return list(reversed(await list_events(self.db, case if case is not None else self.case)))

    async def snapshot(self, *tables: type[object]) -> dict[str, list[Row[tuple[object, ...]]]]:
        """Every row of the bank's record tables, to compare before and after a refusal."""
        out = {}
        async with self.db.session() as s:
            for model in tables or RECORD_TABLES:
                table = model.__table__  # type: ignore[attr-defined]
                out[table.name] = list(await s.execute(select(table).order_by(table.c.id)))
        return out


async def _add_customer(banking: SqlCoreBanking, seq: int, name: str) -> int:
    new = NewCustomer(
        name, id_number(seq), card_number(seq), image_bytes(), "image/jpeg", phone=PHONE
    )
    return (await banking.add_customer(new)).id


async def set_pin(db: Database, customer: int, pin: str) -> None:
    pin_hash = hash_secret(CHEAP_HASHER, pin)
    async with db.session() as s, s.begin():
        await s.execute(update(Card).where(Card.customer_id == customer).values(pin_hash=pin_hash))


async def add_ukey(db: Database, customer: int, serial: str, *, locked: bool = True) -> None:
    async with db.session() as s, s.begin():
        s.add(
            Ukey(
                customer_id=customer,
                serial=serial,
                status="locked" if locked else "active",
                failed_tries=5 if locked else 0,
                updated_at=now(),
            )
        )


def _case(customer: int, service: str) -> Case:
    return Case(
        public_id=secrets.token_hex(8),
        customer_id=customer,
        service=service,
        state="in_call",
        lang="en",
        elderly_mode=False,
        created_at=now(),
    )


async def build_world(db: Database, banking: SqlCoreBanking) -> World:
    alice = await _add_customer(banking, 1, "Alice Wang")
    bob = await _add_customer(banking, 2, "Bob Li")
    await set_pin(db, alice, PIN)
    await add_ukey(db, alice, "UK-00000001")
    async with db.session() as s, s.begin():
        staff = Staff(
            username="advisor1",
            display_name="Advisor",
            password_hash="not-a-hash",
            role="advisor",
            active=True,
            created_at=now(),
        )
        cases = [_case(alice, "pin_change"), _case(alice, "pin_change"), _case(bob, "pin_change")]
        s.add_all([staff, *cases])
        await s.flush()
        attempt = VerificationAttempt(
            public_id=secrets.token_hex(8),
            case_id=cases[0].id,
            customer_id=alice,
            advisor_id=staff.id,
            nonce="n",
            challenges="[]",
            state="passed",
            reasons="[]",
            scores="{}",
            started_at=now(),
            ended_at=now(),
        )
        s.add(attempt)
        await s.flush()
    return World(
        db, banking, alice, bob, cases[0].id, cases[1].id, cases[2].id, staff.id, attempt.id
    )
