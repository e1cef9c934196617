"""argon2 off the event loop, in a pool of its own, bounded.

Each argon2 hash or verification takes 64 MiB and tens to hundreds of milliseconds of one core.
Run in the loop's default executor — shared with video-frame conversion, blob and file I/O —
a flood of logins with wrong passwords (which anyone can send, before any limit has counted
them) would take every one of its threads. Here argon2 gets :data:`THREADS` threads of its own,
and at most :data:`MAX_WAITING` calls may wait for them: beyond that :func:`run` raises
:class:`HashingBusy` at once when the caller asked to be refused rather than queued (the staff
login answers 503 with Retry-After), so memory and waiting stay bounded whatever is sent.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

THREADS = 2
MAX_WAITING = 32  # calls in the pool or waiting for it, beyond which refusable ones are refused

_pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="argon2")
_in_flight = 0  # touched on event-loop threads only


class HashingBusy(RuntimeError):
    """Too many argon2 calls are waiting: try again in a few seconds."""


def in_flight() -> int:
    """argon2 calls running or waiting now."""
    return _in_flight


async def run(fn: Callable[..., T], *args: object, refuse_when_busy: bool = False) -> T:
    """``fn(*args)`` in the argon2 pool. With ``refuse_when_busy`` (unauthenticated callers),
    :class:`HashingBusy` is raised instead of queueing behind :data:`MAX_WAITING` calls."""
    global _in_flight
    if refuse_when_busy and _in_flight >= MAX_WAITING:
        raise HashingBusy("too many password checks are waiting")
    _in_flight += 1
    try:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_pool, functools.partial(fn, *args))
    finally:
        _in_flight -= 1
