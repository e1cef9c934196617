"""Loss report, reissue, PIN change, U-key reset, and what advisors and admins read."""

from __future__ import annotations

from collections.abc import Awaitable

import pytest

from banking.core import CardView, UkeyView
from banking.errors import (
    CustomerNotFound,
    Mismatch,
    NoCard,
    NoLostCard,
    NoUkey,
    OperationRefused,
    PasswordWeak,
    PinFormat,
    PinWeak,
)
from banking.secrets import verify_secret
from banking.sql import SqlCoreBanking
from store.blobs import LocalBlobStore
from store.db import Database
from tests.banking.conftest import PEPPER
from tests.banking.world import CHEAP_HASHER, PIN, World, card_number, id_number


async def _assert_refused_unchanged(
    world: World, call: object, error: type, **attrs: object
) -> None:
    """``call`` (a coroutine) raises ``error`` with ``attrs``; no record changed; event written."""
    before = await world.snapshot()
    with pytest.raises(error) as info:
        await call  # type: ignore[misc]
    for name, value in attrs.items():
        assert getattr(info.value, name) == value
    assert await world.snapshot() == before
    last = (await world.events())[-1]
    assert last.outcome == "refused"
    assert isinstance(info.value, OperationRefused)
    assert last.detail["refusal"] == info.value.code


# --- loss report ---------------------------------------------------------------------------------


async def test_loss_report_blocks_at_once_without_grant(world: World) -> None:
    report = await world.banking.report_loss(customer_id=world.alice, case_id=world.case)
    (card,) = await world.cards()
    assert (card.status, card.blocked_at is not None) == ("lost", True)
    assert report.cards_blocked == (card.number_masked,)
    assert not report.already_blocked
    (event,) = await world.events()
    assert (event.action, event.outcome, event.grant_id) == ("loss_report", "ok", None)
    assert [c.status for c in await world.cards(world.bob)] == ["active"]


async def test_loss_report_needs_no_verification(world: World) -> None:
    # Bob has no verification attempt and no grant at all.
    report = await world.banking.report_loss(customer_id=world.bob, case_id=world.bob_case)
    assert [c.status for c in await world.cards(world.bob)] == ["lost"]
    assert len(report.cards_blocked) == 1


async def test_loss_report_is_idempotent(world: World) -> None:
    first = await world.banking.report_loss(customer_id=world.alice, case_id=world.case)
    before = await world.snapshot()
    again = await world.banking.report_loss(customer_id=world.alice, case_id=world.case)
    assert again.already_blocked
    assert (again.cards_blocked, again.at) == (first.cards_blocked, first.at)
    assert await world.snapshot() == before
    assert [e.detail["cards_blocked"] for e in await world.events()] == [1, 0]


async def test_loss_report_of_an_unknown_customer(world: World) -> None:
    with pytest.raises(CustomerNotFound) as info:
        await world.banking.report_loss(customer_id=999, case_id=world.case)
    assert info.value.code == "customer_not_found"
    assert (await world.events())[-1].detail == {"refusal": "customer_not_found"}


# --- reissue -------------------------------------------------------------------------------------


async def test_reissue_orders_a_new_card_for_the_lost_one(world: World) -> None:
    await world.banking.report_loss(customer_id=world.alice, case_id=world.case)
    grant = await world.grant("card_loss")
    done = await world.banking.order_reissue(
        grant=grant, case_id=world.case, customer_id=world.alice
    )
    lost, new = await world.cards()
    assert (new.status, new.replaces_card_id, new.pin_hash) == ("reissue_ordered", lost.id, None)
    assert new.number_masked == done.new_card_masked == f"6222 **** **** {new.last4}"
    assert done.replaces_card_masked == lost.number_masked
    assert new.last4.isdigit() and lost.status == "lost"
    assert (await world.grant_row(grant)).used_at is not None
    assert (await world.events())[-1].detail == {"new_card": new.number_masked, "replaces": lost.id}


async def test_reissue_needs_a_lost_card(world: World) -> None:
    grant = await world.grant("card_loss")
    call = world.banking.order_reissue(grant=grant, case_id=world.case, customer_id=world.alice)
    await _assert_refused_unchanged(world, call, NoLostCard, code="no_lost_card")
    assert (await world.grant_row(grant)).used_at is None  # the grant is still good


async def test_a_lost_card_is_replaced_once(world: World) -> None:
    await world.banking.report_loss(customer_id=world.alice, case_id=world.case)
    first = await world.grant("card_loss")
    await world.banking.order_reissue(grant=first, case_id=world.case, customer_id=world.alice)
    second = await world.grant("card_loss")
    call = world.banking.order_reissue(grant=second, case_id=world.case, customer_id=world.alice)
    await _assert_refused_unchanged(world, call, NoLostCard)


# --- PIN change ----------------------------------------------------------------------------------


async def _change_pin(world: World, pin: str, confirm: str | None = None) -> Awaitable[object]:
    """A fresh grant, and the (not yet awaited) PIN change that presents it."""
    grant = await world.grant("pin_change")
    return world.banking.change_pin(
        grant=grant, case_id=world.case, customer_id=world.alice, pin=pin, confirm=confirm or pin
    )


async def test_pin_change(world: World) -> None:
    grant = await world.grant("pin_change")
    done = await world.banking.change_pin(
        grant=grant, case_id=world.case, customer_id=world.alice, pin="735190", confirm="735190"
    )
    (card,) = await world.cards()
    assert verify_secret(CHEAP_HASHER, card.pin_hash, "735190")
    assert not verify_secret(CHEAP_HASHER, card.pin_hash, PIN)
    assert (card.pin_retries, done.card_masked) == (0, card.number_masked)
    row = await world.grant_row(grant)
    (event,) = await world.events()
    assert (event.action, event.outcome, event.grant_id) == ("pin_change", "ok", row.id)
    assert row.used_at is not None
    assert "735190" not in repr(event)


@pytest.mark.parametrize(
    ("pin", "reason"),
    [
        ("444444", "same_digits"),
        ("345678", "sequence"),
        ("876543", "sequence"),
        ("901234", "sequence"),
        ("850612", "birth_date"),
        ("061285", "birth_date"),
        ("120685", "birth_date"),
        ("310104", "id_number"),
        ("419850", "id_number"),
        (PIN, "last_pin"),
    ],
)
async def test_weak_pins_are_refused(world: World, pin: str, reason: str) -> None:
    await _assert_refused_unchanged(world, await _change_pin(world, pin), PinWeak, reason=reason)
    assert (await world.events())[-1].detail == {
        "refusal": "pin_weak",
        "reason": reason,
        "field": "pin",
    }


async def test_pin_from_the_id_numbers_last_digits(world: World) -> None:
    tail = id_number(1)[-6:]
    assert tail.isdigit()
    await _assert_refused_unchanged(
        world, await _change_pin(world, tail), PinWeak, reason="id_number"
    )


@pytest.mark.parametrize("pin", ["73519", "7351900", "73519a", "７３５１９０"])
async def test_malformed_pins_are_refused(world: World, pin: str) -> None:
    await _assert_refused_unchanged(world, await _change_pin(world, pin), PinFormat, field="pin")


async def test_mismatched_pin_confirmation(world: World) -> None:
    call = await _change_pin(world, "735190", "735191")
    await _assert_refused_unchanged(world, call, Mismatch, code="mismatch", field="confirm")


async def test_pin_change_needs_a_usable_card(world: World) -> None:
    await world.banking.report_loss(customer_id=world.alice, case_id=world.case)
    await _assert_refused_unchanged(
        world, await _change_pin(world, "735190"), NoCard, code="no_card"
    )


async def test_pin_of_the_reissued_card(world: World) -> None:
    await world.banking.report_loss(customer_id=world.alice, case_id=world.case)
    grant = await world.grant("card_loss")
    await world.banking.order_reissue(grant=grant, case_id=world.case, customer_id=world.alice)
    await (await _change_pin(world, "735190"))
    lost, new = await world.cards()
    assert verify_secret(CHEAP_HASHER, new.pin_hash, "735190")
    assert verify_secret(CHEAP_HASHER, lost.pin_hash, PIN)


async def test_the_default_hasher_stores_full_cost_argon2id(
    world: World, db: Database, blobs: LocalBlobStore
) -> None:
    banking = SqlCoreBanking(db, blobs, PEPPER)
    grant = await world.grant("pin_change")
    await banking.change_pin(
        grant=grant, case_id=world.case, customer_id=world.alice, pin="735190", confirm="735190"
    )
    (card,) = await world.cards()
    assert card.pin_hash is not None
    assert card.pin_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")


# --- U-key reset ---------------------------------------------------------------------------------


async def _reset(world: World, password: str, confirm: str | None = None) -> Awaitable[object]:
    """A fresh grant, and the (not yet awaited) U-key reset that presents it."""
    grant = await world.grant("ukey_reset")
    return world.banking.reset_ukey(
        grant=grant,
        case_id=world.case,
        customer_id=world.alice,
        password=password,
        confirm=confirm if confirm is not None else password,
    )


async def test_ukey_reset_unlocks_with_the_new_password(world: World) -> None:
    assert (await world.ukey()).status == "locked"
    grant = await world.grant("ukey_reset")
    done = await world.banking.reset_ukey(
        grant=grant,
        case_id=world.case,
        customer_id=world.alice,
        password="Tok3n!pw",
        confirm="Tok3n!pw",
    )
    ukey = await world.ukey()
    assert (ukey.status, ukey.failed_tries, done.serial) == ("active", 0, "UK-00000001")
    assert verify_secret(CHEAP_HASHER, ukey.password_hash, "Tok3n!pw")
    assert (await world.grant_row(grant)).used_at is not None
    (event,) = await world.events()
    assert event.detail == {"serial": "UK-00000001", "was": "locked"}


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("Ab1!xyz", "length"),
        ("Ab1!" * 8 + "x", "length"),
        ("abcdefgh12", "classes"),
        ("Abc1!\tdef", "charset"),
        (PIN, "equals_pin"),
        ("Key!" + PIN + "x", "equals_pin"),
    ],
)
async def test_weak_ukey_passwords_are_refused(world: World, password: str, reason: str) -> None:
    call = await _reset(world, password)
    await _assert_refused_unchanged(world, call, PasswordWeak, reason=reason, field="password")


async def test_mismatched_ukey_password(world: World) -> None:
    await _assert_refused_unchanged(world, await _reset(world, "Tok3n!pw", "Tok3n!pW"), Mismatch)


async def test_ukey_reset_without_a_ukey(world: World) -> None:
    grant = await world.grant("ukey_reset", case=world.bob_case, customer=world.bob)
    call = world.banking.reset_ukey(
        grant=grant,
        case_id=world.bob_case,
        customer_id=world.bob,
        password="Tok3n!pw",
        confirm="Tok3n!pw",
    )
    before = await world.snapshot()
    with pytest.raises(NoUkey):
        await call
    assert await world.snapshot() == before
    assert (await world.events(world.bob_case))[-1].detail == {"refusal": "no_ukey"}


# --- reading -------------------------------------------------------------------------------------


async def test_accounts_show_masked_records(world: World) -> None:
    accounts = await world.banking.accounts(world.alice)
    masked = f"6222 **** **** {card_number(1)[-4:]}"
    assert accounts.cards == (CardView(masked, "active", None),)
    assert accounts.phone_masked == "138****8000"
    assert accounts.ukeys == (UkeyView("UK-00000001", "locked"),)
    assert accounts.cooling_off_until is None
    assert accounts.name == "Alice Wang"
    report = await world.banking.report_loss(customer_id=world.alice, case_id=world.case)
    after = await world.banking.accounts(world.alice)
    assert after.cards == (CardView(masked, "lost", report.at),)
    with pytest.raises(CustomerNotFound):
        await world.banking.accounts(999)


async def test_notifications_newest_first(world: World) -> None:
    assert await world.banking.notifications() == ()
    for phone in ("13900139000", "13700137000"):
        grant = await world.grant("phone_change")
        await world.banking.start_phone_change(
            grant=grant, case_id=world.case, customer_id=world.alice, new_phone=phone
        )
    latest = await world.banking.notifications(limit=1)
    assert [n.recipient for n in latest] == ["13700137000"]
    assert [n.recipient for n in await world.banking.notifications()] == [
        "13700137000",
        "13900139000",
    ]
    assert latest[0].text not in repr(latest[0])  # it may hold a code
    with pytest.raises(ValueError):
        await world.banking.notifications(limit=0)
