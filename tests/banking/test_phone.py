"""Reserved phone-number change: code to the new number, notice to the old one, three tries."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import pytest
from sqlalchemy import update

from banking.core import PhoneChanged
from banking.errors import (
    GrantRefused,
    NoOtp,
    OtpExpired,
    OtpFailed,
    OtpLimit,
    OtpWrong,
    PhoneInvalid,
    PhoneSame,
)
from banking.secrets import verify_secret
from store.models import PhoneOtp
from tests.banking.world import CHEAP_HASHER, PHONE, World, now

NEW = "13900139000"
BANK = ("customers", "cards", "ukeys", "notifications")


async def _start(world: World, grant: str, new_phone: str = NEW) -> str:
    """Start the change; the code, read from the SMS in the outbox."""
    await world.banking.start_phone_change(
        grant=grant, case_id=world.case, customer_id=world.alice, new_phone=new_phone
    )
    sms = (await world.outbox())[-1]
    found = re.search(r"\b\d{6}\b", sms.text)
    assert found is not None
    return found.group()


async def _confirm(world: World, grant: str, code: str) -> PhoneChanged:
    return await world.banking.confirm_phone_change(
        grant=grant, case_id=world.case, customer_id=world.alice, code=code
    )


def _other(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def _bank(world: World) -> dict[str, object]:
    snapshot = await world.snapshot()
    return {name: rows for name, rows in snapshot.items() if name in BANK}


async def test_start_sends_a_code_to_the_new_number_only(world: World) -> None:
    grant = await world.grant("phone_change")
    started = await world.banking.start_phone_change(
        grant=grant, case_id=world.case, customer_id=world.alice, new_phone="+86 139-0013-9000"
    )
    assert started.new_phone_masked == "139****9000"
    assert started.otp_expires_at - now() <= timedelta(minutes=5)
    (sms,) = await world.outbox()
    assert (sms.recipient, sms.kind, sms.customer_id) == (NEW, "otp", world.alice)
    code = re.findall(r"\b\d{6}\b", sms.text)[0]
    (otp,) = await world.otps()
    assert (otp.state, otp.wrong_tries, otp.new_phone) == ("pending", 0, NEW)
    assert verify_secret(CHEAP_HASHER, otp.code_hash, code)
    assert (await world.grant_row(grant)).used_at is None  # checked, not consumed
    assert (await world.customer()).phone == PHONE
    (event,) = await world.events()
    assert (event.action, event.outcome) == ("phone_change_start", "ok")
    assert event.detail["new_phone"] == "139****9000"
    assert all(code not in str(e.detail) for e in await world.events())


async def test_the_right_code_changes_the_phone_and_tells_the_old_number(world: World) -> None:
    grant = await world.grant("phone_change")
    code = await _start(world, grant)
    done = await _confirm(world, grant, code)
    customer = await world.customer()
    assert customer.phone == NEW
    assert customer.cooling_off_until is not None
    assert timedelta(days=7) - (done.cooling_off_until - now()) < timedelta(minutes=1)
    assert done.new_phone_masked == "139****9000"
    notice = (await world.outbox())[-1]
    assert (notice.recipient, notice.kind) == (PHONE, "notice")
    assert "139****9000" in notice.text and "95500" in notice.text and code not in notice.text
    assert (await world.otps())[0].state == "verified"
    assert (await world.grant_row(grant)).used_at is not None
    last = (await world.events())[-1]
    assert (last.action, last.outcome) == ("phone_change_confirm", "ok")
    assert last.detail["old_phone"] == "138****8000"
    accounts = await world.banking.accounts(world.alice)
    assert accounts.phone_masked == "139****9000"
    assert accounts.cooling_off_until is not None


async def test_a_wrong_code_counts_and_changes_nothing_else(world: World) -> None:
    grant = await world.grant("phone_change")
    code = await _start(world, grant)
    before = await _bank(world)
    with pytest.raises(OtpWrong) as info:
        await _confirm(world, grant, _other(code))
    assert (info.value.code, info.value.tries_left, info.value.field) == ("otp_wrong", 2, "code")
    assert await _bank(world) == before
    assert (await world.otps())[0].wrong_tries == 1
    last = (await world.events())[-1]
    assert last.outcome == "refused"
    assert last.detail == {
        "refusal": "otp_wrong",
        "tries_left": 2,
        "field": "code",
        "grant_revoked": False,
    }


async def test_three_wrong_codes_revoke_the_grant(world: World) -> None:
    grant = await world.grant("phone_change")
    code = await _start(world, grant)
    before = await _bank(world)
    for tries_left in (2, 1):
        with pytest.raises(OtpWrong) as info:
            await _confirm(world, grant, _other(code))
        assert info.value.tries_left == tries_left
    with pytest.raises(OtpFailed):
        await _confirm(world, grant, "garbage")
    assert (await world.grant_row(grant)).revoked_at is not None
    assert (await world.otps())[0].state == "failed"
    with pytest.raises(GrantRefused) as refused:
        await _confirm(world, grant, code)  # even the right code
    assert refused.value.reason == "revoked"
    assert await _bank(world) == before
    assert (await world.customer()).phone == PHONE
    details = [e.detail.get("refusal") for e in await world.events()]
    assert details[-4:] == ["otp_wrong", "otp_wrong", "otp_failed", "grant_refused"]


async def test_a_new_start_replaces_the_code_and_keeps_the_count(world: World) -> None:
    grant = await world.grant("phone_change")
    first = await _start(world, grant)
    with pytest.raises(OtpWrong):
        await _confirm(world, grant, _other(first))
    second = await _start(world, grant, "13700137000")
    assert [o.state for o in await world.otps()] == ["replaced", "pending"]
    if first != second:
        with pytest.raises(OtpWrong) as info:
            await _confirm(world, grant, first)  # the old code is dead
        assert info.value.tries_left == 1  # one from each code
    done = await _confirm(world, grant, second)
    assert done.new_phone_masked == "137****7000"
    assert (await world.customer()).phone == "13700137000"


async def test_restarting_buys_no_extra_guesses(world: World) -> None:
    grant = await world.grant("phone_change")
    code = await _start(world, grant)
    for _ in range(2):
        with pytest.raises(OtpWrong):
            await _confirm(world, grant, _other(code))
    code = await _start(world, grant)
    with pytest.raises(OtpFailed):
        await _confirm(world, grant, _other(code))


async def test_an_expired_code_is_refused(world: World) -> None:
    grant = await world.grant("phone_change")
    code = await _start(world, grant)
    async with world.db.session() as s, s.begin():
        await s.execute(update(PhoneOtp).values(expires_at=now() - timedelta(seconds=1)))
    before = await world.snapshot()
    with pytest.raises(OtpExpired) as info:
        await _confirm(world, grant, code)
    assert info.value.code == "otp_expired"
    assert await world.snapshot() == before
    assert (await world.events())[-1].detail == {"refusal": "otp_expired"}


async def test_confirm_without_start(world: World) -> None:
    grant = await world.grant("phone_change")
    before = await world.snapshot()
    with pytest.raises(NoOtp):
        await _confirm(world, grant, "123456")
    assert await world.snapshot() == before
    assert (await world.events())[-1].detail == {"refusal": "no_otp"}


@pytest.mark.parametrize("number", ["12345", "23900139000", "+12345", "1390013900", "phone"])
async def test_invalid_numbers_are_refused(world: World, number: str) -> None:
    grant = await world.grant("phone_change")
    before = await world.snapshot()
    with pytest.raises(PhoneInvalid):
        await _start(world, grant, number)
    assert await world.snapshot() == before
    assert (await world.events())[-1].detail == {"refusal": "phone_invalid", "field": "new_phone"}


@pytest.mark.parametrize("number", [PHONE, "138 0013 8000", "+8613800138000"])
async def test_the_current_number_is_refused(world: World, number: str) -> None:
    grant = await world.grant("phone_change")
    before = await world.snapshot()
    with pytest.raises(PhoneSame) as info:
        await _start(world, grant, number)
    assert info.value.code == "phone_same"
    assert await world.snapshot() == before
    assert (await world.events())[-1].outcome == "refused"


async def test_codes_per_grant_are_bounded(world: World) -> None:
    """Issue 12: during one grant the step sent codes without limit."""
    grant = await world.grant("phone_change")
    for n in range(3):
        await _start(world, grant, f"1390013900{n}")
    before = await _bank(world)
    with pytest.raises(OtpLimit) as refused:
        await _start(world, grant, "13900139009")
    assert refused.value.code == "otp_limit" and refused.value.per == "grant"
    assert await _bank(world) == before  # no fourth SMS
    assert [o.state for o in await world.otps()].count("pending") == 1  # the last code still works


async def test_codes_to_one_number_are_bounded_whoever_asks(world: World) -> None:
    for _ in range(5):
        await _start(world, await world.grant("phone_change"), NEW)
    with pytest.raises(OtpLimit) as refused:
        await _start(world, await world.grant("phone_change"), NEW)
    assert refused.value.per == "number"
    assert len([sms for sms in await world.outbox() if sms.recipient == NEW]) == 5
    await _start(world, await world.grant("phone_change"), "13700137000")  # another number


async def test_simultaneous_starts_do_not_pass_the_count_together(world: World) -> None:
    grant = await world.grant("phone_change")
    results = await asyncio.gather(
        *(_start(world, grant, f"1390013900{n}") for n in range(8)), return_exceptions=True
    )
    assert sum(isinstance(r, str) for r in results) == 3
    assert all(isinstance(r, OtpLimit) for r in results if not isinstance(r, str))
