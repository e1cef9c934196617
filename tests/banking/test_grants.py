"""Every grant-taking operation refuses every kind of bad grant, and changes nothing then."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

from banking.errors import GrantRefused
from tests.banking.world import World

Call = Callable[[World, str], Awaitable[object]]


async def _pin(w: World, grant: str) -> object:
    return await w.banking.change_pin(
        grant=grant, case_id=w.case, customer_id=w.alice, pin="735190", confirm="735190"
    )


async def _reissue(w: World, grant: str) -> object:
    return await w.banking.order_reissue(grant=grant, case_id=w.case, customer_id=w.alice)


async def _ukey(w: World, grant: str) -> object:
    return await w.banking.reset_ukey(
        grant=grant, case_id=w.case, customer_id=w.alice, password="Tok3n!pw", confirm="Tok3n!pw"
    )


async def _phone_start(w: World, grant: str) -> object:
    return await w.banking.start_phone_change(
        grant=grant, case_id=w.case, customer_id=w.alice, new_phone="13900139000"
    )


async def _phone_confirm(w: World, grant: str) -> object:
    return await w.banking.confirm_phone_change(
        grant=grant, case_id=w.case, customer_id=w.alice, code="123456"
    )


OPERATIONS: dict[str, tuple[str, Call]] = {
    "pin_change": ("pin_change", _pin),
    "card_reissue": ("card_loss", _reissue),
    "ukey_reset": ("ukey_reset", _ukey),
    "phone_change_start": ("phone_change", _phone_start),
    "phone_change_confirm": ("phone_change", _phone_confirm),
}


async def _bad_grant(w: World, service: str, reason: str) -> str:
    match reason:
        case "no_grant":
            return "no-such-grant"
        case "expired":
            return await w.grant(service, expires_in=timedelta(seconds=-1))
        case "used":
            return await w.grant(service, used=True)
        case "revoked":
            return await w.grant(service, revoked=True)
        case "wrong_case":
            return await w.grant(service, case=w.other_case)
        case "wrong_customer":
            return await w.grant(service, customer=w.bob)
        case "wrong_service":
            return await w.grant("consultation" if service != "consultation" else "pin_change")
    raise AssertionError(reason)


@pytest.mark.parametrize("action", sorted(OPERATIONS))
@pytest.mark.parametrize(
    "reason",
    ["no_grant", "expired", "used", "revoked", "wrong_case", "wrong_customer", "wrong_service"],
)
async def test_bad_grants_are_refused_and_change_nothing(
    world: World, action: str, reason: str
) -> None:
    service, call = OPERATIONS[action]
    if action == "card_reissue":  # the loss report itself needs no grant: block first
        await world.banking.report_loss(customer_id=world.alice, case_id=world.case)
    grant = await _bad_grant(world, service, reason)
    before = await world.snapshot()
    with pytest.raises(GrantRefused) as info:
        await call(world, grant)
    assert info.value.reason == reason
    assert info.value.code == "grant_refused"
    assert await world.snapshot() == before
    last = (await world.events())[-1]
    assert (last.action, last.outcome) == (action, "refused")
    assert last.detail == {"refusal": "grant_refused", "reason": reason}
    assert grant not in repr(last)


@pytest.mark.parametrize("action", ["pin_change", "ukey_reset"])
async def test_a_grant_works_once(world: World, action: str) -> None:
    service, call = OPERATIONS[action]
    grant = await world.grant(service)
    await call(world, grant)
    assert (await world.grant_row(grant)).used_at is not None
    before = await world.snapshot()
    with pytest.raises(GrantRefused) as info:
        await call(world, grant)
    assert info.value.reason == "used"
    assert await world.snapshot() == before
    outcomes = [(e.action, e.outcome) for e in await world.events()]
    assert outcomes[-2:] == [(action, "ok"), (action, "refused")]


async def test_an_unknown_grant_names_no_grant_row(world: World) -> None:
    with pytest.raises(GrantRefused):
        await _pin(world, "x" * 500)  # absurd ids are not even looked up
    assert (await world.events())[-1].grant_id is None


async def test_the_refusal_event_names_the_grant_it_found(world: World) -> None:
    grant = await world.grant("pin_change", revoked=True)
    with pytest.raises(GrantRefused):
        await _pin(world, grant)
    assert (await world.events())[-1].grant_id == (await world.grant_row(grant)).id
