"""Limits per address and per target, checked and recorded atomically (issue 12, item 3)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cases.errors import IdentificationFailed, TooManyAttempts
from cases.intake import Intake, IntakeLimits
from cases.limits import AttemptLimiter, Limit
from cases.store import CaseStore
from store.config import StoreConfig
from store.db import open_database
from tests.banking.world import World, card_number, id_number
from tests.store.test_postgres import reset_schema

LIMITS = IntakeLimits(
    per_address=5, per_id_number=10, window_seconds=900, cases_per_customer_hour=3
)


def intake(world: World) -> Intake:
    limiter = AttemptLimiter(world.db, "test secret")
    return Intake(world.banking, CaseStore(world.db), limiter, LIMITS)


def _written(n: int) -> str:
    """Alice's ID number as a guesser might type it: plain, spaced, full-width, lower-case x."""
    plain = id_number(1)
    forms = (plain, " ".join([plain[:6], plain[6:14], plain[14:]]), plain.translate(FULL_WIDTH))
    return forms[n % 3].lower()


FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


async def _identify(desk: Intake, address: str, last4: str, n: int = 0) -> str:
    try:
        await desk.identify(
            address, "pin_change", "Alice Wang", _written(n), last4, lang="en", elderly=False
        )
    except TooManyAttempts:
        return "refused"
    except IdentificationFailed:
        return "failed"
    return "opened"


async def test_guesses_from_rotating_addresses_lock_the_id_number(world: World) -> None:
    """200 wrong card digits for one customer, each from a new address and the ID number written
    three ways: only 10 are tried, and then the right digits do not open a case either."""
    desk, right = intake(world), card_number(1)[-4:]
    wrong = [f"{n:04d}" for n in range(200) if f"{n:04d}" != right]
    outcomes = [
        await _identify(desk, f"10.0.{n // 250}.{n % 250}", w, n) for n, w in enumerate(wrong)
    ]
    assert outcomes.count("failed") == 10 and outcomes.count("refused") == len(wrong) - 10
    assert await _identify(desk, "10.9.9.9", right) == "refused"
    # Another customer is not locked by Alice's guesses.
    other = await desk.identify(
        "10.9.9.9",
        "pin_change",
        "Bob Li",
        id_number(2),
        card_number(2)[-4:],
        lang="en",
        elderly=False,
    )
    assert other.case.state.value == "identified"


async def test_a_burst_of_guesses_passes_no_more_than_the_limit(world: World) -> None:
    """Check and record are one transaction: 30 wrong guesses sent at once from one address get
    5 tries, not 30 (the old check-then-record let a burst through)."""
    desk = intake(world)
    outcomes = await asyncio.gather(*(_identify(desk, "10.1.1.1", "0000") for _ in range(30)))
    assert outcomes.count("failed") == 5 and outcomes.count("refused") == 25


async def test_the_right_data_does_not_count_and_cases_per_customer_are_bounded(
    world: World,
) -> None:
    desk, right = intake(world), card_number(1)[-4:]
    outcomes = [await _identify(desk, "10.2.2.2", right) for _ in range(5)]
    # Successes do not use up the address's guesses; the customer may open 3 cases an hour.
    assert outcomes == ["opened"] * 3 + ["refused"] * 2
    assert await _identify(desk, "10.2.2.2", "0000") == "failed"


async def test_simultaneous_attempts_on_two_nodes_share_one_count(tmp_path: Path) -> None:
    await _race(f"sqlite+aiosqlite:///{tmp_path / 'limits.db'}", tmp_path)


async def test_simultaneous_attempts_on_two_nodes_share_one_count_on_postgresql(
    pg_url: str, tmp_path: Path
) -> None:
    await reset_schema(pg_url)
    await _race(pg_url, tmp_path)


async def _race(url: str, tmp_path: Path) -> None:
    """Two "nodes" (two engines on one database) racing 40 attempts: exactly the limit passes."""
    cfg = StoreConfig(url, tmp_path / "blobs")
    first = await open_database(cfg)
    second = await open_database(cfg)
    try:
        nodes = [AttemptLimiter(first, "s"), AttemptLimiter(second, "s")]
        limit = [Limit("login-user", "advisor1", 7, 900), Limit("login-address", "::1", 100, 900)]

        async def attempt(n: int) -> bool:
            try:
                await nodes[n % 2].begin(limit)
            except TooManyAttempts:
                return False
            return True

        passed = await asyncio.gather(*(attempt(n) for n in range(40)))
        assert sum(passed) == 7
        # A success given back frees its place; the refused ones recorded nothing.
        ticket = None
        with pytest.raises(TooManyAttempts):
            ticket = await nodes[0].begin(limit)
        assert ticket is None
    finally:
        await first.close()
        await second.close()


async def test_a_success_is_given_back(world: World) -> None:
    limiter = AttemptLimiter(world.db, "s")
    limit = [Limit("login-user", "advisor1", 2, 900)]
    for _ in range(5):  # five right logins in a row
        await limiter.succeeded(await limiter.begin(limit))
    await limiter.begin(limit)
    await limiter.begin(limit)
    with pytest.raises(TooManyAttempts):
        await limiter.begin(limit)
