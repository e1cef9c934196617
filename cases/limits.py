"""Limits on guessing and on use, per client address **and** per target, shared by nodes.

A :class:`Limit` is "at most ``attempts`` within ``window_seconds`` under one key": the key is a
keyed hash (HMAC) of a scope and a subject — the client's address, the ID number a customer
types, a staff username, a customer — so the table holds no address or ID number in the clear.

:meth:`AttemptLimiter.begin` checks and records in one transaction, for every limit at once:
each key's recorded attempts within its window are counted with the new one already written
(SQLite's single writer; PostgreSQL advisory locks per key, see :func:`store.db.serialize`), so
a burst of simultaneous attempts cannot all pass a count taken before any was recorded. An
attempt under way counts until it ends: :meth:`AttemptLimiter.succeeded` takes it back (only
failures count towards a guessing limit); :meth:`AttemptLimiter.take` records a use that always
counts (cases opened by a customer).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select

from cases.errors import TooManyAttempts
from store.db import Database, serialize
from store.models import IdentifyAttempt

# The longest window any limit uses: rows older than this are deleted as attempts are made.
MAX_WINDOW = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``attempts`` under ``scope``/``subject`` within ``window_seconds``."""

    scope: str
    subject: str
    attempts: int
    window_seconds: int


@dataclass(frozen=True, slots=True)
class Ticket:
    """The rows :meth:`AttemptLimiter.begin` recorded for one attempt."""

    row_ids: tuple[int, ...]


class AttemptLimiter:
    """Counts attempts per key in the database (every node sees the same counts)."""

    def __init__(self, db: Database, secret: str = "") -> None:
        self._db = db
        self._secret = secret.encode()

    def key(self, limit: Limit) -> str:
        """The hex key ``limit`` is counted under."""
        message = f"{limit.scope}:{limit.subject}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    async def begin(self, limits: Sequence[Limit]) -> Ticket:
        """Record one attempt under every limit, or raise :class:`TooManyAttempts` (and record
        nothing) when any of them has used up its attempts. Atomic across nodes."""
        now = datetime.now(UTC)
        keys = [self.key(limit) for limit in limits]
        async with self._db.session() as s, s.begin():
            await serialize(s, keys)
            rows = [IdentifyAttempt(client_key=key, attempted_at=now) for key in keys]
            s.add_all(rows)
            await s.flush()  # the write first: on SQLite it takes the single writer's lock
            for limit, key in zip(limits, keys, strict=True):
                since = now - timedelta(seconds=limit.window_seconds)
                used = await s.scalar(
                    select(func.count())
                    .select_from(IdentifyAttempt)
                    .where(IdentifyAttempt.client_key == key, IdentifyAttempt.attempted_at >= since)
                )
                if (used or 0) > limit.attempts:
                    raise TooManyAttempts(limit.window_seconds)  # rolls the new rows back
            await s.execute(
                delete(IdentifyAttempt).where(IdentifyAttempt.attempted_at < now - MAX_WINDOW)
            )
        return Ticket(tuple(row.id for row in rows))

    async def succeeded(self, ticket: Ticket) -> None:
        """The attempt succeeded: it no longer counts towards a guessing limit."""
        async with self._db.session() as s, s.begin():
            await s.execute(delete(IdentifyAttempt).where(IdentifyAttempt.id.in_(ticket.row_ids)))

    async def take(self, limits: Sequence[Limit]) -> None:
        """Record a use that always counts (e.g. a case opened), or raise
        :class:`TooManyAttempts` when one of ``limits`` is used up."""
        await self.begin(limits)
