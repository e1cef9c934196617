"""On SQLite and on PostgreSQL: double submission of one grant, and every service once.

The PostgreSQL server is the tests' throwaway one (``pg_url``); its schema is reset per test.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from banking import operations
from banking.core import PinChanged
from banking.errors import GrantRefused, OtpWrong
from banking.guard import GrantRef
from banking.secrets import verify_secret
from banking.sql import SqlCoreBanking
from store.blobs import LocalBlobStore
from store.config import StoreConfig
from store.db import open_database
from tests.banking.conftest import PEPPER
from tests.banking.world import CHEAP_HASHER, World, build_world
from tests.store.test_postgres import reset_schema

PINS = ("735190", "246813", "135792", "918273")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A synchronous fixture: starting the PostgreSQL server must not hold the event loop."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'bank.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
async def any_world(database_url: str, tmp_path: Path) -> AsyncIterator[World]:
    url = database_url
    if url.startswith("postgresql"):
        await reset_schema(url)
    db = await open_database(StoreConfig(url, tmp_path / "blobs"))
    try:
        blobs = LocalBlobStore(tmp_path / "blobs")
        banking = SqlCoreBanking(db, blobs, PEPPER, hasher=CHEAP_HASHER)
        yield await build_world(db, banking)
    finally:
        await db.close()


Consume = Callable[[AsyncSession, GrantRef, object], Awaitable[int]]


async def test_one_grant_submitted_four_times_at_once_works_once(
    any_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = any_world
    # Hold every submission just before its conditional UPDATE until all four are there, so
    # that the UPDATE (not the earlier read-only check) is what has to pick the one winner.
    barrier = asyncio.Barrier(len(PINS))
    real: Consume = operations.consume_grant  # type: ignore[assignment]

    async def consume_together(session: AsyncSession, ref: GrantRef, now: object) -> int:
        async with asyncio.timeout(10):
            await barrier.wait()
        return await real(session, ref, now)

    monkeypatch.setattr(operations, "consume_grant", consume_together)
    grant = await world.grant("pin_change")
    results = await asyncio.gather(
        *(
            world.banking.change_pin(
                grant=grant, case_id=world.case, customer_id=world.alice, pin=pin, confirm=pin
            )
            for pin in PINS
        ),
        return_exceptions=True,
    )
    winners = [pin for pin, r in zip(PINS, results, strict=True) if isinstance(r, PinChanged)]
    losers = [r for r in results if isinstance(r, GrantRefused)]
    assert len(winners) == 1, results
    assert [r.reason for r in losers] == ["used"] * (len(PINS) - 1)
    (card,) = await world.cards()
    assert [pin for pin in PINS if verify_secret(CHEAP_HASHER, card.pin_hash, pin)] == winners
    outcomes = sorted(e.outcome for e in await world.events())
    assert outcomes == ["ok"] + ["refused"] * (len(PINS) - 1)


async def test_every_service_once(any_world: World) -> None:
    w, bank = any_world, any_world.banking
    report = await bank.report_loss(customer_id=w.alice, case_id=w.case)
    assert not report.already_blocked
    assert (await bank.report_loss(customer_id=w.alice, case_id=w.case)).already_blocked
    reissue = await w.grant("card_loss")
    await bank.order_reissue(grant=reissue, case_id=w.case, customer_id=w.alice)
    pin = await w.grant("pin_change")
    await bank.change_pin(
        grant=pin, case_id=w.case, customer_id=w.alice, pin="735190", confirm="735190"
    )
    ukey = await w.grant("ukey_reset")
    await bank.reset_ukey(
        grant=ukey, case_id=w.case, customer_id=w.alice, password="Tok3n!pw", confirm="Tok3n!pw"
    )
    phone = await w.grant("phone_change")
    await bank.start_phone_change(
        grant=phone, case_id=w.case, customer_id=w.alice, new_phone="13900139000"
    )
    found = re.search(r"\b\d{6}\b", (await w.outbox())[-1].text)
    assert found is not None
    code = found.group()
    with pytest.raises(OtpWrong):
        await bank.confirm_phone_change(
            grant=phone, case_id=w.case, customer_id=w.alice, code=f"{(int(code) + 1) % 10**6:06d}"
        )
    await bank.confirm_phone_change(grant=phone, case_id=w.case, customer_id=w.alice, code=code)
    accounts = await bank.accounts(w.alice)
    assert [c.status for c in accounts.cards] == ["lost", "reissue_ordered"]
    assert (accounts.phone_masked, accounts.ukeys[0].status) == ("139****9000", "active")
    assert accounts.cooling_off_until is not None
    with pytest.raises(GrantRefused):
        await bank.change_pin(
            grant=pin, case_id=w.case, customer_id=w.alice, pin="246813", confirm="246813"
        )
    actions = [(e.action, e.outcome) for e in await w.events()]
    assert actions == [
        ("loss_report", "ok"),
        ("loss_report", "ok"),
        ("card_reissue", "ok"),
        ("pin_change", "ok"),
        ("ukey_reset", "ok"),
        ("phone_change_start", "ok"),
        ("phone_change_confirm", "refused"),
        ("phone_change_confirm", "ok"),
        ("pin_change", "refused"),
    ]
