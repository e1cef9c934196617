"""Fixtures shared by every test package."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.pg import throwaway_postgres

REPO = Path(__file__).resolve().parent.parent
# A callback that holds the loop this long stalls every peer's timers: the test fails.
# Measured in fresh-clone runs of the whole suite on the 2-core machine (debug-mode loop): steps
# of aiortc, aiohttp and SQLAlchemy themselves (closing peers, answering a request, reading a
# socket, closing a session) reach 0.36–0.60 s now and then; 0.3 s and 0.5 s each failed healthy
# tests. This is a net for gross stalls (a migration, a batch of face analyses, a blocking
# socket); shorter CPU work (one argon2 hash at full cost: 0.15 s here) is kept off the loop by
# review and by the code's own asyncio.to_thread, not by this guard.
BLOCK_LIMIT = 1.0


def shared_data_dir() -> Path:
    """``../shared/data`` (or ``CLOUDBRANCH_SHARED_DATA``); a missing folder fails loudly."""
    path = Path(os.environ.get("CLOUDBRANCH_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not (path / "identity").is_dir():
        pytest.fail(f"shared test data not found at {path} (set CLOUDBRANCH_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL server for the tests: ``CLOUDBRANCH_TEST_POSTGRES_URL`` or a throwaway one."""
    configured = os.environ.get("CLOUDBRANCH_TEST_POSTGRES_URL", "")
    if configured:
        yield configured
        return
    with throwaway_postgres() as url:
        yield url


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real faces and clips in ``../shared/data``."""
    return shared_data_dir()


class _GcPauses:
    """The interpreter's garbage collections, timed (``gc.callbacks``): a pause of the whole
    process — late in a long suite a full collection of its heap can take a second on the
    2-core machine — not a callback of ours holding the loop."""

    def __init__(self) -> None:
        self.pauses: list[tuple[float, float]] = []
        self._started: float | None = None

    def __call__(self, phase: str, _info: dict[str, int]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._started = now
        elif self._started is not None:
            self.pauses.append((self._started, now))
            self._started = None

    def within(self, end: float, seconds: float) -> float:
        """Seconds of collection in the ``seconds`` before ``end``."""
        start = end - seconds
        return sum(max(0.0, min(b, end) - max(a, start)) for a, b in self.pauses)


_TOOK = re.compile(r" took ([0-9.]+) seconds")


class _SlowCallbacks(logging.Handler):
    """Collects asyncio's debug-mode reports of callbacks that held the loop too long, less the
    garbage collections that ran meanwhile."""

    def __init__(self, gc_pauses: _GcPauses) -> None:
        super().__init__(logging.WARNING)
        self.reports: list[str] = []
        self._gc = gc_pauses

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        found = _TOOK.search(message)
        if not message.startswith("Executing") or found is None:
            return
        took = float(found.group(1))
        collecting = self._gc.within(time.perf_counter(), took + 0.05)
        if took - collecting >= BLOCK_LIMIT:
            self.reports.append(f"{message} (garbage collection meanwhile: {collecting:.3f} s)")


@pytest.fixture(autouse=True)
async def _no_leaked_tasks_or_blocked_loop(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Fail a test that leaves tasks running or blocks the event loop (>= BLOCK_LIMIT).

    Browser tests run the server in its own process: their loop only drives Playwright, whose
    stalls on a loaded machine say nothing about the server, so only leaks are checked there.
    """
    check_blocking = request.node.get_closest_marker("e2e") is None
    loop = asyncio.get_running_loop()
    before = asyncio.all_tasks()
    gc_pauses = _GcPauses()
    gc.callbacks.append(gc_pauses)
    watcher = _SlowCallbacks(gc_pauses)
    asyncio_log = logging.getLogger("asyncio")
    asyncio_log.addHandler(watcher)
    loop.set_debug(True)
    loop.slow_callback_duration = BLOCK_LIMIT
    try:
        yield
        for _ in range(20):  # let closing tasks finish their last steps
            leaked = [t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()]
            if not leaked:
                break
            await asyncio.sleep(0.05)
    finally:
        asyncio_log.removeHandler(watcher)
        gc.callbacks.remove(gc_pauses)
        loop.set_debug(False)
    if leaked:
        for task in leaked:
            task.cancel()
        pytest.fail(f"test left tasks running: {[t.get_name() for t in leaked]}")
    if watcher.reports and check_blocking:
        pytest.fail("the event loop was blocked:\n" + "\n".join(watcher.reports))
