"""The card and U-key services, and what the advisor and admins may read.

Each operation: check the grant (read only), check the input, do the argon2 work in a worker
thread, then one transaction that consumes the grant, changes the record and appends the ``ok``
audit event. Every transaction starts with its write, so that on SQLite the second of two
concurrent submissions waits for the first and then finds the grant used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from argon2 import PasswordHasher
from sqlalchemy import exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from banking import hashing
from banking.core import (
    Accounts,
    CardView,
    LossReport,
    Notification,
    PinChanged,
    ReissueOrdered,
    UkeyReset,
    UkeyView,
)
from banking.errors import CustomerNotFound, NoCard, NoLostCard, NoUkey, PasswordWeak, PinWeak
from banking.guard import (
    CARD_LOSS,
    PIN_CHANGE,
    UKEY_RESET,
    GrantRef,
    audit_ok,
    aware,
    check_grant,
    consume_grant,
    refusals_audited,
    utcnow,
)
from banking.identity import mask_card_number
from banking.secrets import (
    PASSWORD_MAX,
    PinContext,
    check_password_entry,
    check_pin_entry,
    hash_secret,
    mask_phone,
    new_card_number,
    pin_weakness,
    reuses_pin,
)
from store.db import Database
from store.models import Card, Customer, Ukey
from store.models import Notification as OutboxRow

DEFAULT_HOTLINE = "95500"
MAX_NOTIFICATIONS = 500
# Cards whose PIN can be set and whose PIN a U-key password must not reuse.
_USABLE = ("active", "reissue_ordered")
_NO = {"synchronize_session": False}


@dataclass(frozen=True, slots=True)
class BankContext:
    """What the operations need: the database, the argon2 hasher, the ID-number pepper."""

    db: Database
    hasher: PasswordHasher
    pepper: str = field(repr=False)
    hotline: str = DEFAULT_HOTLINE  # printed in the notice to the old phone number


async def report_loss(ctx: BankContext, customer_id: int, case_id: int) -> LossReport:
    """Block every active card of the customer; a second report returns the same cards."""
    async with refusals_audited(ctx.db, "loss_report", case_id=case_id, customer_id=customer_id):
        now = utcnow()
        block = (
            update(Card)
            .where(Card.customer_id == customer_id, Card.status == "active")
            .values(status="lost", blocked_at=now)
            .returning(Card.id)
        )
        async with ctx.db.session() as s, s.begin():
            blocked = (await s.scalars(block, execution_options=_NO)).all()
            if not blocked and await s.get(Customer, customer_id) is None:
                raise CustomerNotFound(customer_id)
            lost = (
                await s.scalars(
                    select(Card)
                    .where(Card.customer_id == customer_id, Card.status == "lost")
                    .order_by(Card.id)
                )
            ).all()
            detail: dict[str, object] = {"cards_blocked": len(blocked), "lost_cards": len(lost)}
            await audit_ok(
                s,
                "loss_report",
                case_id=case_id,
                customer_id=customer_id,
                grant_id=None,
                detail=detail,
            )
    times = [aware(c.blocked_at) for c in lost if c.blocked_at is not None]
    at = now if blocked or not times else max(times)
    return LossReport(tuple(c.number_masked for c in lost), not blocked and bool(lost), at)


async def _card_to_replace(s: AsyncSession, customer_id: int) -> Card | None:
    """The customer's most recently blocked lost card that no card replaces yet."""
    newer = aliased(Card)
    query = (
        select(Card)
        .where(
            Card.customer_id == customer_id,
            Card.status == "lost",
            ~exists().where(newer.replaces_card_id == Card.id),
        )
        .order_by(Card.blocked_at.desc(), Card.id.desc())
        .limit(1)
    )
    return await s.scalar(query)


def _issuer_prefix(masked: str) -> str:
    # Only the first four digits of a card number are stored: the replacement keeps them.
    head = masked[:4]
    return head if head.isascii() and head.isdigit() else "6222"


async def order_reissue(
    ctx: BankContext, grant: str, case_id: int, customer_id: int
) -> ReissueOrdered:
    """Order a new card (new random number, same issuer digits) for the lost one."""
    ref = GrantRef(grant, case_id, customer_id, CARD_LOSS)
    action = "card_reissue"
    async with refusals_audited(ctx.db, action, case_id=case_id, customer_id=customer_id) as trail:
        trail.grant_id = await check_grant(ctx.db, ref)
        now = utcnow()
        async with ctx.db.session() as s, s.begin():
            grant_id = await consume_grant(s, ref, now)
            lost = await _card_to_replace(s, customer_id)
            if lost is None:
                raise NoLostCard()
            number = new_card_number(_issuer_prefix(lost.number_masked))
            card = Card(
                customer_id=customer_id,
                number_masked=mask_card_number(number),
                last4=number[-4:],
                status="reissue_ordered",
                pin_retries=0,
                created_at=now,
                replaces_card_id=lost.id,
            )
            s.add(card)
            detail: dict[str, object] = {"new_card": card.number_masked, "replaces": lost.id}
            await audit_ok(
                s,
                action,
                case_id=case_id,
                customer_id=customer_id,
                grant_id=grant_id,
                detail=detail,
            )
    return ReissueOrdered(card.number_masked, lost.number_masked, now)


async def _pin_target(db: Database, customer_id: int, pepper: str) -> tuple[Card, PinContext]:
    """The card whose PIN is set (the newest usable one) and what its new PIN must not be."""
    async with db.session() as s, s.begin():
        customer = await s.get(Customer, customer_id)
        card = await s.scalar(
            select(Card)
            .where(Card.customer_id == customer_id, Card.status.in_(_USABLE))
            .order_by(Card.id.desc())
            .limit(1)
        )
    if customer is None:
        raise CustomerNotFound(customer_id)
    if card is None:
        raise NoCard()
    context = PinContext(
        customer.birth_date,
        customer.id_number_masked,
        customer.id_number_hmac,
        pepper,
        card.pin_hash,
    )
    return card, context


async def change_pin(
    ctx: BankContext, grant: str, case_id: int, customer_id: int, pin: str, confirm: str
) -> PinChanged:
    """Set the PIN of the customer's card; the grant is consumed only if it is set."""
    ref = GrantRef(grant, case_id, customer_id, PIN_CHANGE)
    action = "pin_change"
    async with refusals_audited(ctx.db, action, case_id=case_id, customer_id=customer_id) as trail:
        trail.grant_id = await check_grant(ctx.db, ref)
        check_pin_entry(pin, confirm)
        card, context = await _pin_target(ctx.db, customer_id, ctx.pepper)
        reason = await hashing.run(pin_weakness, pin, context, ctx.hasher)
        if reason is not None:
            raise PinWeak(reason)
        pin_hash = await hashing.run(hash_secret, ctx.hasher, pin)
        now = utcnow()
        set_pin = (
            update(Card)
            .where(Card.id == card.id, Card.status.in_(_USABLE))
            .values(pin_hash=pin_hash, pin_retries=0)
            .returning(Card.id)
        )
        async with ctx.db.session() as s, s.begin():
            grant_id = await consume_grant(s, ref, now)
            if await s.scalar(set_pin, execution_options=_NO) is None:
                raise NoCard()  # reported lost meanwhile
            await audit_ok(
                s,
                action,
                case_id=case_id,
                customer_id=customer_id,
                grant_id=grant_id,
                detail={"card": card.number_masked},
            )
    return PinChanged(card.number_masked, now)


async def _ukey_target(db: Database, customer_id: int) -> tuple[Ukey, list[str | None]]:
    """The customer's newest U-key and the PIN hashes of their usable cards."""
    async with db.session() as s, s.begin():
        ukey = await s.scalar(
            select(Ukey).where(Ukey.customer_id == customer_id).order_by(Ukey.id.desc()).limit(1)
        )
        pins = (
            await s.scalars(
                select(Card.pin_hash).where(
                    Card.customer_id == customer_id, Card.status.in_(_USABLE)
                )
            )
        ).all()
    if ukey is None:
        raise NoUkey()
    return ukey, list(pins)


async def reset_ukey(
    ctx: BankContext, grant: str, case_id: int, customer_id: int, password: str, confirm: str
) -> UkeyReset:
    """Set a new U-key password, unlock the key and clear its failure count."""
    ref = GrantRef(grant, case_id, customer_id, UKEY_RESET)
    action = "ukey_reset"
    async with refusals_audited(ctx.db, action, case_id=case_id, customer_id=customer_id) as trail:
        trail.grant_id = await check_grant(ctx.db, ref)
        ukey, pin_hashes = await _ukey_target(ctx.db, customer_id)
        # Before the length rule: a six-digit password that is the PIN gets the useful answer.
        reused = len(password) <= PASSWORD_MAX and await hashing.run(
            reuses_pin, password, pin_hashes, ctx.hasher
        )
        if reused:
            raise PasswordWeak("equals_pin")
        check_password_entry(password, confirm)
        password_hash = await hashing.run(hash_secret, ctx.hasher, password)
        now = utcnow()
        reset = (
            update(Ukey)
            .where(Ukey.id == ukey.id)
            .values(password_hash=password_hash, status="active", failed_tries=0, updated_at=now)
        )
        async with ctx.db.session() as s, s.begin():
            grant_id = await consume_grant(s, ref, now)
            await s.execute(reset, execution_options=_NO)
            detail: dict[str, object] = {"serial": ukey.serial, "was": ukey.status}
            await audit_ok(
                s,
                action,
                case_id=case_id,
                customer_id=customer_id,
                grant_id=grant_id,
                detail=detail,
            )
    return UkeyReset(ukey.serial, now)


async def accounts(ctx: BankContext, customer_id: int) -> Accounts:
    """The customer's records as the advisor may see them (masked, no secret)."""
    async with ctx.db.session() as s, s.begin():
        customer = await s.get(Customer, customer_id)
        cards = (
            await s.scalars(select(Card).where(Card.customer_id == customer_id).order_by(Card.id))
        ).all()
        ukeys = (
            await s.scalars(select(Ukey).where(Ukey.customer_id == customer_id).order_by(Ukey.id))
        ).all()
    if customer is None:
        raise CustomerNotFound(customer_id)
    return Accounts(
        customer_id=customer.id,
        name=customer.name,
        cards=tuple(
            CardView(c.number_masked, c.status, aware(c.blocked_at) if c.blocked_at else None)
            for c in cards
        ),
        phone_masked=mask_phone(customer.phone) if customer.phone else None,
        cooling_off_until=aware(customer.cooling_off_until) if customer.cooling_off_until else None,
        ukeys=tuple(UkeyView(u.serial, u.status) for u in ukeys),
    )


async def notifications(ctx: BankContext, limit: int = 50) -> tuple[Notification, ...]:
    """The SMS outbox, newest first."""
    if not 1 <= limit <= MAX_NOTIFICATIONS:
        raise ValueError(f"limit must be between 1 and {MAX_NOTIFICATIONS}")
    query = select(OutboxRow).order_by(OutboxRow.id.desc()).limit(limit)
    async with ctx.db.session() as s, s.begin():
        rows = (await s.scalars(query)).all()
    return tuple(
        Notification(r.id, r.customer_id, r.recipient, r.kind, r.text, aware(r.created_at))
        for r in rows
    )
