"""Counting failed attempts (identification, staff login) to stop guessing; shared by nodes."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select

from cases.errors import TooManyAttempts
from store.db import Database
from store.models import IdentifyAttempt


def client_key(scope: str, address: str) -> str:
    """The key failures are counted under (a hash: addresses are personal data)."""
    return hashlib.sha256(f"{scope}:{address}".encode()).hexdigest()


class AttemptLimiter:
    """At most ``attempts`` failures per key within a sliding window."""

    def __init__(self, db: Database, attempts: int, window_seconds: int) -> None:
        self._db = db
        self._attempts = attempts
        self._window = timedelta(seconds=window_seconds)

    async def check(self, key: str) -> None:
        """Raise :class:`TooManyAttempts` when ``key`` has used up its failures."""
        since = datetime.now(UTC) - self._window
        async with self._db.session() as s:
            failures = await s.scalar(
                select(func.count())
                .select_from(IdentifyAttempt)
                .where(IdentifyAttempt.client_key == key, IdentifyAttempt.attempted_at >= since)
            )
        if (failures or 0) >= self._attempts:
            raise TooManyAttempts(int(self._window.total_seconds()))

    async def failed(self, key: str) -> None:
        """Count one failure for ``key`` (and forget failures older than the window)."""
        now = datetime.now(UTC)
        async with self._db.session() as s, s.begin():
            s.add(IdentifyAttempt(client_key=key, attempted_at=now))
            await s.execute(
                delete(IdentifyAttempt).where(IdentifyAttempt.attempted_at < now - self._window)
            )
