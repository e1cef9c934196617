"""Fixtures of the media tests: a loopback-only CallManager and a task-leak check."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from media.call import CallManager
from media.config import MediaConfig
from media.ice import enable_loopback_ice
from tests.media.peers import ClientPeer


@pytest.fixture
def config() -> MediaConfig:
    """Loopback-only settings with room for two calls."""
    return MediaConfig(ice_loopback_only=True, max_calls=2)


@pytest.fixture
async def manager(config: MediaConfig) -> AsyncIterator[CallManager]:
    """A CallManager whose calls are all closed after the test; fails on leaked tasks."""
    enable_loopback_ice()  # the clients gather on loopback too
    before = asyncio.all_tasks()
    manager = CallManager(config)
    yield manager
    await manager.close_all()
    leaked = await _running_tasks(before)
    assert not leaked, f"tasks left running: {leaked}"


async def _running_tasks(before: set[asyncio.Task[object]]) -> list[asyncio.Task[object]]:
    """Tasks started since ``before`` still running after a grace period.

    aiortc's own connect task winds down a few loop iterations after ``close()``.
    """
    ignored = {*before, asyncio.current_task()}
    for _ in range(50):
        leaked = [t for t in asyncio.all_tasks() - ignored if not t.done()]
        if not leaked:
            break
        await asyncio.sleep(0.02)
    return leaked


@pytest.fixture
async def clients(manager: CallManager) -> AsyncIterator[list[ClientPeer]]:
    """Register client peers here; they are closed before the leak check of ``manager``."""
    peers: list[ClientPeer] = []
    yield peers
    await asyncio.gather(*(peer.close() for peer in peers))
