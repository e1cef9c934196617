"""Reconnection grace: act on a disconnect only if the peer has not come back in time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

Action = Callable[[], Awaitable[None]]

log = logging.getLogger(__name__)


class GraceTimers:
    """One owned, cancellable delayed action per key (e.g. per hub principal)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, key: str, action: Action) -> None:
        """Run ``action`` after the grace period unless :meth:`cancel` is called for ``key``."""
        self.cancel(key)
        self._tasks[key] = asyncio.create_task(self._later(key, action), name=f"grace:{key}")

    async def _later(self, key: str, action: Action) -> None:
        # The action is made only when it runs: a timer cancelled early leaves nothing behind.
        await asyncio.sleep(self.seconds)
        self._tasks.pop(key, None)
        try:
            await action()
        except Exception:  # the action owns its retries; a failure is never silent
            log.exception("grace action failed", extra={"key": key})

    def cancel(self, key: str) -> None:
        """Forget the pending action of ``key`` (the peer is back, or it no longer matters)."""
        task = self._tasks.pop(key, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def aclose(self) -> None:
        """Cancel every pending action and wait for them to finish."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
