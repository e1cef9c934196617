"""Confirmation, decline, four-eyes approval and grants, through the service desk and the real
SQL bank: what the customer's page and the advisor's console would show at each step, and that
no record changes without the authorisation."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, update

from banking.errors import GrantRefused
from cases.grants import GrantDesk, GrantError
from cases.operations import ServiceDesk, ServiceRefused
from cases.states import CaseState
from cases.store import CaseRef
from store.models import Case, Staff, VerificationAttempt
from tests.banking.world import World, now

NEW_PIN = "739162"


async def _case(world: World, service: str, *, advisor: int | None = None) -> CaseRef:
    """Alice's case switched to ``service``, in a call with ``advisor`` (the world's staff)."""
    staff = advisor if advisor is not None else world.staff
    async with world.db.session() as s, s.begin():
        await s.execute(
            update(Case).where(Case.id == world.case).values(service=service, advisor_id=staff)
        )
    public_id = f"case-{world.case}"
    return CaseRef(
        world.case, public_id, world.alice, "Alice Wang", service, CaseState.IN_CALL, "en",
        False, staff, None,
    )  # fmt: skip


async def _attempt_id(world: World) -> str:
    async with world.db.session() as s:
        row = await s.get(VerificationAttempt, world.attempt)
    assert row is not None
    return row.public_id


async def _new_attempt(world: World, state: str, *, age: timedelta = timedelta(0)) -> str:
    public_id = secrets.token_hex(8)
    async with world.db.session() as s, s.begin():
        s.add(
            VerificationAttempt(
                public_id=public_id, case_id=world.case, customer_id=world.alice,
                advisor_id=world.staff, nonce="m", challenges="[]", state=state, reasons="[]",
                scores="{}", started_at=now() - age, ended_at=now() - age,
            )
        )  # fmt: skip
    return public_id


async def _supervisor(world: World) -> int:
    async with world.db.session() as s, s.begin():
        row = Staff(
            username="supervisor1", display_name="Sup", password_hash="x", role="supervisor",
            active=True, created_at=now(),
        )  # fmt: skip
        s.add(row)
        await s.flush()
        return row.id


@pytest.fixture
def desk(world: World) -> ServiceDesk:
    return ServiceDesk(world.db, GrantDesk(world.db), world.banking)


def _pin_verifies(pin_hash: str | None, pin: str) -> bool:
    assert pin_hash is not None
    try:
        return PasswordHasher().verify(pin_hash, pin)
    except Exception:
        return False


async def test_confirmed_pass_lets_the_customer_set_a_pin_once(
    world: World, desk: ServiceDesk
) -> None:
    case = await _case(world, "pin_change")
    attempt = await _attempt_id(world)
    assert (await desk.status(case)).step == "confirm"
    assert await desk.grants.confirm(case, attempt, world.staff) == "granted"
    status = await desk.status(case)
    assert status.step == "ready" and status.grant_expires_at is not None
    done = await desk.change_pin(case, NEW_PIN, NEW_PIN)
    assert done.step == "done" and done.receipt is not None
    assert done.receipt["what"] == "service.done.pin_changed"
    assert NEW_PIN not in str(done.as_json())  # the receipt names the card, never the PIN
    (card,) = await world.cards()
    assert _pin_verifies(card.pin_hash, NEW_PIN)
    with pytest.raises(GrantRefused):  # the grant was single use
        await desk.change_pin(case, "582039", "582039")
    (card,) = await world.cards()
    assert _pin_verifies(card.pin_hash, NEW_PIN)


async def test_without_confirmation_nothing_changes(world: World, desk: ServiceDesk) -> None:
    case = await _case(world, "pin_change")
    before = await world.snapshot()
    with pytest.raises(GrantRefused) as refused:
        await desk.change_pin(case, NEW_PIN, NEW_PIN)
    assert refused.value.reason == "no_grant"
    assert await world.snapshot() == before


async def test_a_declined_attempt_authorises_nothing(world: World, desk: ServiceDesk) -> None:
    case = await _case(world, "pin_change")
    attempt = await _attempt_id(world)
    await desk.grants.decline(case, attempt, world.staff, "not the person on the photo")
    status = await desk.status(case)
    assert status.step == "declined" and status.declined_reason == "not the person on the photo"
    with pytest.raises(GrantError) as err:
        await desk.grants.confirm(case, attempt, world.staff)
    assert err.value.code == "already_reviewed"
    before = await world.snapshot()
    with pytest.raises(GrantRefused):
        await desk.change_pin(case, NEW_PIN, NEW_PIN)
    assert await world.snapshot() == before
    with pytest.raises(GrantError, match="reason"):
        await desk.grants.decline(case, await _new_attempt(world, "passed"), world.staff, "  ")


@pytest.mark.parametrize("state", ["failed", "referred", "aborted"])
async def test_a_check_that_did_not_pass_can_be_declined_with_a_reason(
    world: World, desk: ServiceDesk, state: str
) -> None:
    case = await _case(world, "pin_change")
    attempt = await _new_attempt(world, state)
    assert (await desk.status(case)).step == "verify"
    await desk.grants.decline(case, attempt, world.staff, "face does not match the photo")
    status = await desk.status(case)
    assert status.step == "declined" and status.attempt_id == attempt
    assert status.declined_reason == "face does not match the photo"
    (event,) = [e for e in await world.events() if e.action == "verification.declined"]
    assert event.actor_kind == "staff" and event.actor_id == world.staff
    assert event.detail == {"attempt": attempt, "reason": "face does not match the photo"}
    query = select(VerificationAttempt).where(VerificationAttempt.public_id == attempt)
    async with world.db.session() as s:
        row = (await s.scalars(query)).one()
    assert (row.review, row.review_reason, row.state) == ("declined", status.declined_reason, state)
    with pytest.raises(GrantError) as err:  # once only, and it authorises nothing
        await desk.grants.decline(case, attempt, world.staff, "again")
    assert err.value.code == "already_reviewed"
    assert await desk.grants.live_grant(case.id) is None


async def test_only_the_latest_finished_attempt_can_be_declined(
    world: World, desk: ServiceDesk
) -> None:
    case = await _case(world, "pin_change")
    older = await _new_attempt(world, "failed")
    running = await _new_attempt(world, "running")
    for attempt, code in ((older, "not_latest"), (running, "not_finished")):
        with pytest.raises(GrantError) as err:
            await desk.grants.decline(case, attempt, world.staff, "not the customer")
        assert err.value.code == code
    with pytest.raises(GrantError) as err:  # the reason is required for a failed check too
        await desk.grants.decline(case, older, world.staff, "")
    assert err.value.code == "reason_required"
    assert not [e for e in await world.events() if e.action == "verification.declined"]


@pytest.mark.parametrize(
    ("state", "age", "code"),
    [
        ("failed", timedelta(0), "not_passed"),
        ("referred", timedelta(0), "not_passed"),
        ("passed", timedelta(minutes=11), "attempt_too_old"),
    ],
)
async def test_only_a_fresh_pass_can_be_confirmed(
    world: World, desk: ServiceDesk, state: str, age: timedelta, code: str
) -> None:
    case = await _case(world, "pin_change")
    attempt = await _new_attempt(world, state, age=age)
    assert (await desk.status(case)).step == "verify"
    with pytest.raises(GrantError) as err:
        await desk.grants.confirm(case, attempt, world.staff)
    assert err.value.code == code
    assert await desk.grants.live_grant(case.id) is None


async def test_an_older_pass_or_another_advisor_cannot_confirm(
    world: World, desk: ServiceDesk
) -> None:
    case = await _case(world, "pin_change")
    older = await _attempt_id(world)
    await _new_attempt(world, "failed")
    with pytest.raises(GrantError) as err:
        await desk.grants.confirm(case, older, world.staff)
    assert err.value.code == "not_latest"
    other = await _supervisor(world)
    latest = await _new_attempt(world, "passed")
    with pytest.raises(GrantError) as err:
        await desk.grants.confirm(case, latest, other)
    assert err.value.code == "not_your_case"


async def test_an_attempt_of_another_case_cannot_authorise_this_one(
    world: World, desk: ServiceDesk
) -> None:
    case = await _case(world, "pin_change")
    attempt = await _attempt_id(world)
    elsewhere = CaseRef(
        world.other_case, "other", world.alice, "Alice Wang", "pin_change", CaseState.IN_CALL,
        "en", False, world.staff, None,
    )  # fmt: skip
    with pytest.raises(GrantError) as err:
        await desk.grants.confirm(elsewhere, attempt, world.staff)
    assert err.value.code == "not_found"
    assert (await desk.status(case)).step == "confirm"


async def test_ukey_reset_needs_a_second_member_of_staff(world: World, desk: ServiceDesk) -> None:
    case = await _case(world, "ukey_reset")
    attempt = await _attempt_id(world)
    assert await desk.grants.confirm(case, attempt, world.staff) == "awaiting_approval"
    status = await desk.status(case)
    assert status.step == "approval" and status.approval is not None
    pending = await desk.grants.pending()
    assert [p.attempt_id for p in pending] == [attempt]
    before = await world.snapshot()
    with pytest.raises(GrantRefused):
        await desk.reset_ukey(case, "Str0ng!pass", "Str0ng!pass")
    assert await world.snapshot() == before
    with pytest.raises(GrantError) as err:  # the advisor cannot approve their own request
        await desk.grants.decide(pending[0].id, world.staff, True, "")
    assert err.value.code == "four_eyes"
    supervisor = await _supervisor(world)
    await desk.grants.decide(pending[0].id, supervisor, True, "checked the recording")
    ready = await desk.status(case)
    assert ready.step == "ready" and ready.approval is not None
    assert ready.approval["state"] == "approved"  # the consoles still show who decided what
    assert await desk.grants.pending() == []
    done = await desk.reset_ukey(case, "Str0ng!pass", "Str0ng!pass")
    assert done.step == "done" and done.receipt is not None
    ukey = await world.ukey()
    assert ukey.status == "active"
    with pytest.raises(GrantError) as err:
        await desk.grants.decide(pending[0].id, supervisor, False, "too late")
    assert err.value.code == "already_decided"


async def test_a_rejected_ukey_reset_changes_nothing(world: World, desk: ServiceDesk) -> None:
    case = await _case(world, "ukey_reset")
    await desk.grants.confirm(case, await _attempt_id(world), world.staff)
    (item,) = await desk.grants.pending()
    supervisor = await _supervisor(world)
    with pytest.raises(GrantError, match="reason"):
        await desk.grants.decide(item.id, supervisor, False, "")
    await desk.grants.decide(item.id, supervisor, False, "voice does not match")
    status = await desk.status(case)
    assert status.step == "rejected" and status.approval is not None
    assert status.approval["reason"] == "voice does not match"
    before = await world.snapshot()
    with pytest.raises(GrantRefused):
        await desk.reset_ukey(case, "Str0ng!pass", "Str0ng!pass")
    assert await world.snapshot() == before
    assert (await world.ukey()).status == "locked"


async def test_loss_report_blocks_at_once_and_reissue_needs_the_grant(
    world: World, desk: ServiceDesk
) -> None:
    case = await _case(world, "card_loss")
    waiting = CaseRef(**{**_fields(case), "state": CaseState.QUEUED})
    assert (await desk.status(waiting)).step == "block"
    status = await desk.report_loss(waiting)  # in the queue: no call, no verification yet
    # Blocked; the passed attempt of this world now waits for the advisor (for the reissue).
    assert status.step == "confirm" and status.blocked is not None
    assert [c.status for c in await world.cards()] == ["lost"]
    again = await desk.report_loss(waiting)
    assert again.blocked is not None and again.blocked["already_blocked"] is True
    with pytest.raises(GrantRefused):
        await desk.reissue(case)
    assert [c.status for c in await world.cards()] == ["lost"]
    await desk.grants.confirm(case, await _attempt_id(world), world.staff)
    done = await desk.reissue(case)
    assert done.step == "done" and done.receipt is not None
    assert [c.status for c in await world.cards()] == ["lost", "reissue_ordered"]


async def test_a_loss_report_stays_when_verification_then_fails(
    world: World, desk: ServiceDesk
) -> None:
    case = await _case(world, "card_loss")
    await desk.report_loss(case)
    failed = await _new_attempt(world, "failed")
    assert (await desk.status(case)).step == "verify"
    with pytest.raises(GrantError):
        await desk.grants.confirm(case, failed, world.staff)
    with pytest.raises(GrantRefused):
        await desk.reissue(case)
    assert [c.status for c in await world.cards()] == ["lost"]


async def test_requests_for_another_service_or_outside_the_call_are_refused(
    world: World, desk: ServiceDesk
) -> None:
    case = await _case(world, "phone_change")
    await desk.grants.confirm(case, await _attempt_id(world), world.staff)
    with pytest.raises(ServiceRefused) as err:
        await desk.change_pin(case, NEW_PIN, NEW_PIN)
    assert err.value.code == "wrong_service"
    closed = CaseRef(**{**_fields(case), "state": CaseState.CLOSED})
    with pytest.raises(ServiceRefused) as err:
        await desk.start_phone(closed, "13912345678")
    assert err.value.code == "bad_state"
    assert (await desk.status(case)).step == "ready"


async def test_a_phone_change_waits_for_the_code_then_changes_the_number(
    world: World, desk: ServiceDesk
) -> None:
    case = await _case(world, "phone_change")
    await desk.grants.confirm(case, await _attempt_id(world), world.staff)
    assert (await desk.start_phone(case, "139 1234 5678")).step == "code"
    otp = (await world.outbox())[-1]
    assert otp.recipient == "13912345678" and otp.kind == "otp"
    code = next(word for word in otp.text.split() if word.strip(".,:").isdigit())
    done = await desk.confirm_phone(case, code.strip(".,:"))
    assert done.step == "done" and done.receipt is not None
    assert (await world.customer()).phone == "13912345678"
    account = done.account
    assert account is not None and account["phone"] == "139****5678"
    assert account["cooling_off_until"] is not None  # the advisor sees the cooling-off flag
    assert code.strip(".,:") not in str(done.as_json())


def _fields(case: CaseRef) -> dict[str, object]:
    return {name: getattr(case, name) for name in CaseRef.__slots__}
