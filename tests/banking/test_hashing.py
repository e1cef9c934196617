"""argon2 in its own bounded pool (issue 12): a flood of password checks neither takes the
threads the rest of the server uses nor queues without bound."""

from __future__ import annotations

import asyncio
import threading

import pytest

from banking import hashing
from banking.hashing import HashingBusy


async def test_a_flood_of_checks_leaves_the_default_executor_free_and_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hashing, "MAX_WAITING", 6)
    release = threading.Event()

    def slow_check() -> str:  # an argon2 verification that takes as long as the test says
        release.wait(10)
        return threading.current_thread().name

    flood = [
        asyncio.ensure_future(hashing.run(slow_check, refuse_when_busy=True)) for _ in range(6)
    ]
    await asyncio.sleep(0.05)
    assert hashing.in_flight() == 6
    # The seventh unauthenticated check is refused at once instead of waiting.
    with pytest.raises(HashingBusy):
        await hashing.run(slow_check, refuse_when_busy=True)
    # Meanwhile the default executor (frame conversion, blob I/O; six threads on two cores,
    # which six argon2 calls held there would all take) still runs work.
    assert await asyncio.wait_for(asyncio.to_thread(lambda: 42), timeout=5) == 42
    # A check a signed-in customer's operation needs waits its turn instead of being refused.
    operation = asyncio.ensure_future(hashing.run(slow_check))
    release.set()
    names = await asyncio.gather(*flood, operation)
    assert all(name.startswith("argon2") for name in names)
    assert hashing.in_flight() == 0
