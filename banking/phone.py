"""The reserved-phone-number change: a one-time code to the new number, a notice to the old one.

``start`` checks the grant without consuming it, stores the code's argon2 hash and puts the code
into the outbox (the SMS gateway's stand-in) addressed to the new number: the outbox text is the
only place the code ever appears. A new start replaces the pending code of the case; the wrong
tries already spent on it carry over, so restarting does not buy more guesses.

Codes are bounded: at most :data:`OTP_SENDS_PER_GRANT` per grant (a new verification for
more) and :data:`OTP_SENDS_PER_NUMBER` to one number in 24 hours, whoever asks — counted and
recorded in the one transaction that stores the code (on PostgreSQL under advisory locks on the
grant and the number), so simultaneous starts cannot pass the count together.

``confirm`` with the right code consumes the grant, changes the number, starts the cooling-off
period and notifies the old number, in one transaction. A wrong code counts (that count commits,
with its audit event); the third one kills the code and revokes the grant: verify again.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NoReturn

from sqlalchemy import case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from banking import hashing
from banking.core import PhoneChanged, PhoneChangeStarted
from banking.errors import (
    CustomerNotFound,
    NoOtp,
    OperationRefused,
    OtpExpired,
    OtpFailed,
    OtpLimit,
    OtpWrong,
    PhoneSame,
)
from banking.guard import (
    PHONE_CHANGE,
    GrantRef,
    Trail,
    audit_ok,
    aware,
    check_grant,
    consume_grant,
    refusal_detail,
    refusals_audited,
    revoke_grant,
    utcnow,
)
from banking.operations import BankContext
from banking.secrets import (
    OTP_LENGTH,
    hash_secret,
    mask_phone,
    new_otp,
    normalise_phone,
    same_phone,
    verify_secret,
)
from store.audit import add_event
from store.db import Database, serialize
from store.models import Customer, PhoneOtp
from store.models import Notification as OutboxRow

OTP_TTL = timedelta(minutes=5)
OTP_MAX_WRONG = 3
OTP_SENDS_PER_GRANT = 3
OTP_SENDS_PER_NUMBER = 5
OTP_NUMBER_WINDOW = timedelta(hours=24)
COOLING_OFF = timedelta(days=7)
_NO = {"synchronize_session": False}
_START, _CONFIRM = "phone_change_start", "phone_change_confirm"


def otp_text(code: str) -> str:
    """The SMS carrying the code (to the new number)."""
    minutes = int(OTP_TTL.total_seconds() // 60)
    return (
        f"CloudBranch: {code} is your code to make this number your reserved phone number. "
        f"It expires in {minutes} minutes. Bank staff will never ask you for it."
    )


def notice_text(new_phone: str, at: datetime, hotline: str) -> str:
    """The SMS to the old number once the change is done."""
    return (
        f"CloudBranch: the reserved phone number of your account was changed to "
        f"{mask_phone(new_phone)} on {at:%Y-%m-%d %H:%M} UTC. "
        f"If this was not you, call {hotline} at once."
    )


async def _current_phone(db: Database, customer_id: int) -> str | None:
    async with db.session() as s, s.begin():
        customer = await s.get(Customer, customer_id)
    if customer is None:
        raise CustomerNotFound(customer_id)
    return customer.phone


async def _replace_pending(s: AsyncSession, case_id: int) -> int:
    """Mark the case's pending codes replaced; the most wrong tries spent on any of them."""
    replaced = (
        update(PhoneOtp)
        .where(PhoneOtp.case_id == case_id, PhoneOtp.state == "pending")
        .values(state="replaced")
        .returning(PhoneOtp.wrong_tries)
    )
    return max((await s.scalars(replaced, execution_options=_NO)).all(), default=0)


async def start_phone_change(
    ctx: BankContext, grant: str, case_id: int, customer_id: int, new_phone: str
) -> PhoneChangeStarted:
    """Send a code to ``new_phone``; the grant is checked, not consumed."""
    ref = GrantRef(grant, case_id, customer_id, PHONE_CHANGE)
    async with refusals_audited(ctx.db, _START, case_id=case_id, customer_id=customer_id) as trail:
        trail.grant_id = grant_id = await check_grant(ctx.db, ref)
        phone = normalise_phone(new_phone)
        if same_phone(await _current_phone(ctx.db, customer_id), phone):
            raise PhoneSame()
        code = new_otp()
        code_hash = await hashing.run(hash_secret, ctx.hasher, code)
        now = utcnow()
        async with ctx.db.session() as s, s.begin():
            await serialize(s, [f"otp-grant:{grant_id}", f"otp-number:{phone}"])
            tries = await _replace_pending(s, case_id)  # the write first (SQLite's lock)
            await _check_sends(s, grant_id, phone, now)
            s.add(
                PhoneOtp(
                    case_id=case_id,
                    grant_id=grant_id,
                    customer_id=customer_id,
                    new_phone=phone,
                    code_hash=code_hash,
                    created_at=now,
                    expires_at=now + OTP_TTL,
                    wrong_tries=tries,
                    state="pending",
                )
            )
            s.add(_sms(customer_id, phone, "otp", otp_text(code), now))
            detail: dict[str, object] = {"new_phone": mask_phone(phone), "wrong_tries": tries}
            await audit_ok(
                s,
                _START,
                case_id=case_id,
                customer_id=customer_id,
                grant_id=grant_id,
                detail=detail,
            )
    return PhoneChangeStarted(mask_phone(phone), now + OTP_TTL)


async def _check_sends(s: AsyncSession, grant_id: int, phone: str, now: datetime) -> None:
    """Refuse a code beyond the grant's or the number's allowance (rolls the start back)."""
    per_grant = select(func.count()).where(PhoneOtp.grant_id == grant_id)
    if (await s.scalar(per_grant) or 0) >= OTP_SENDS_PER_GRANT:
        raise OtpLimit("grant")
    per_number = select(func.count()).where(
        PhoneOtp.new_phone == phone, PhoneOtp.created_at >= now - OTP_NUMBER_WINDOW
    )
    if (await s.scalar(per_number) or 0) >= OTP_SENDS_PER_NUMBER:
        raise OtpLimit("number")


def _sms(customer_id: int, recipient: str, kind: str, text: str, now: datetime) -> OutboxRow:
    return OutboxRow(
        customer_id=customer_id, recipient=recipient, kind=kind, text=text, created_at=now
    )


async def _pending_otp(db: Database, ref: GrantRef, grant_id: int) -> PhoneOtp:
    query = (
        select(PhoneOtp)
        .where(
            PhoneOtp.case_id == ref.case_id,
            PhoneOtp.customer_id == ref.customer_id,
            PhoneOtp.grant_id == grant_id,
            PhoneOtp.state == "pending",
        )
        .order_by(PhoneOtp.id.desc())
        .limit(1)
    )
    async with db.session() as s, s.begin():
        otp = await s.scalar(query)
    if otp is None:
        raise NoOtp()
    return otp


def _code_matches(ctx: BankContext, otp: PhoneOtp, code: str) -> bool:
    """argon2 work: run in a worker thread. Absurd input is wrong without hashing it."""
    code = code.strip()
    return len(code) <= 4 * OTP_LENGTH and verify_secret(ctx.hasher, otp.code_hash, code)


async def _count_wrong(ctx: BankContext, otp: PhoneOtp, ref: GrantRef, trail: Trail) -> NoReturn:
    """Count a wrong code and raise ``OtpWrong`` (or ``OtpFailed`` and revoke the grant)."""
    now = utcnow()
    wrong = PhoneOtp.wrong_tries + 1
    count = (
        update(PhoneOtp)
        .where(PhoneOtp.id == otp.id, PhoneOtp.state == "pending")
        .values(wrong_tries=wrong, state=case((wrong >= OTP_MAX_WRONG, "failed"), else_="pending"))
        .returning(PhoneOtp.wrong_tries, PhoneOtp.state)
    )
    async with ctx.db.session() as s, s.begin():
        row = (await s.execute(count, execution_options=_NO)).one_or_none()
        if row is None:
            raise NoOtp()  # confirmed, replaced or failed meanwhile
        tries, state = row
        failed = state == "failed"
        err: OperationRefused = OtpFailed() if failed else OtpWrong(OTP_MAX_WRONG - tries)
        if failed:
            await revoke_grant(s, otp.grant_id, now)
        # The count and its event commit together, unlike other refusals (nothing to roll back).
        await add_event(
            s,
            action=_CONFIRM,
            outcome="refused",
            actor_kind="customer",
            actor_id=ref.customer_id,
            case_id=ref.case_id,
            grant_id=otp.grant_id,
            detail={**refusal_detail(err), "grant_revoked": failed},
        )
    trail.recorded = True
    raise err


async def _apply(ctx: BankContext, otp: PhoneOtp, ref: GrantRef) -> PhoneChanged:
    now = utcnow()
    verify = (
        update(PhoneOtp)
        .where(PhoneOtp.id == otp.id, PhoneOtp.state == "pending")
        .values(state="verified")
        .returning(PhoneOtp.id)
    )
    async with ctx.db.session() as s, s.begin():
        grant_id = await consume_grant(s, ref, now)
        if await s.scalar(verify, execution_options=_NO) is None:
            raise NoOtp()
        customer = await s.get(Customer, ref.customer_id)
        if customer is None:
            raise CustomerNotFound(ref.customer_id)
        old_phone = customer.phone
        customer.phone = otp.new_phone
        customer.cooling_off_until = now + COOLING_OFF
        if old_phone:
            s.add(
                _sms(
                    customer.id,
                    old_phone,
                    "notice",
                    notice_text(otp.new_phone, now, ctx.hotline),
                    now,
                )
            )
        detail: dict[str, object] = {
            "new_phone": mask_phone(otp.new_phone),
            "old_phone": mask_phone(old_phone) if old_phone else None,
            "cooling_off_until": now + COOLING_OFF,
        }
        await audit_ok(
            s,
            _CONFIRM,
            case_id=ref.case_id,
            customer_id=ref.customer_id,
            grant_id=grant_id,
            detail=detail,
        )
    return PhoneChanged(mask_phone(otp.new_phone), now + COOLING_OFF, now)


async def confirm_phone_change(
    ctx: BankContext, grant: str, case_id: int, customer_id: int, code: str
) -> PhoneChanged:
    """Change the reserved phone number if ``code`` is the one sent to the new number."""
    ref = GrantRef(grant, case_id, customer_id, PHONE_CHANGE)
    async with refusals_audited(
        ctx.db, _CONFIRM, case_id=case_id, customer_id=customer_id
    ) as trail:
        trail.grant_id = grant_id = await check_grant(ctx.db, ref)
        otp = await _pending_otp(ctx.db, ref, grant_id)
        if aware(otp.expires_at) <= utcnow():
            raise OtpExpired()
        if not await hashing.run(_code_matches, ctx, otp, code):
            await _count_wrong(ctx, otp, ref, trail)
        return await _apply(ctx, otp, ref)
