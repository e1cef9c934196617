"""Reconnection grace: the action runs only when nobody cancelled it in time."""

from __future__ import annotations

import asyncio
from functools import partial

from signaling.grace import GraceTimers


async def test_action_runs_after_the_grace_unless_cancelled() -> None:
    timers = GraceTimers(0.05)
    done: list[str] = []

    async def drop(who: str) -> None:
        done.append(who)

    timers.start("customer:a", partial(drop, "a"))
    timers.start("customer:b", partial(drop, "b"))
    timers.cancel("customer:b")  # b came back
    timers.start("customer:c", partial(drop, "c-old"))
    timers.start(
        "customer:c", partial(drop, "c-new")
    )  # a later disconnect replaces the earlier one
    await asyncio.sleep(0.15)
    assert sorted(done) == ["a", "c-new"]


async def test_close_cancels_pending_actions() -> None:
    timers = GraceTimers(10)
    done: list[str] = []

    async def drop() -> None:
        done.append("dropped")

    timers.start("advisor:1", drop)
    await timers.aclose()
    await asyncio.sleep(0)
    assert done == []
