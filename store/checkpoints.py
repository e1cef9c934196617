"""Signed checkpoints of the audit log, and the verification of the whole log.

A checkpoint signs the head of the chain (the last event's ``seq`` and ``hash``) with the audit
key (``store.signing``). The chain alone shows a changed, deleted or reordered event; the
checkpoints also show a log rewritten from some event on with fresh hashes, or cut short,
because nobody without the key can sign the rewritten head. Each checkpoint is logged too, so a
copy lives outside the database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from store.audit import chain_head
from store.chain import Broken, ChainEvent, ChainWalker
from store.db import Database
from store.models import AuditCheckpoint, AuditEvent
from store.signing import Checkpoint, check_checkpoint, sign_checkpoint

log = logging.getLogger(__name__)

VERIFY_BATCH = 1000
_EVENT_COLUMNS = (
    AuditEvent.seq,
    AuditEvent.at,
    AuditEvent.actor_kind,
    AuditEvent.actor_id,
    AuditEvent.case_id,
    AuditEvent.grant_id,
    AuditEvent.action,
    AuditEvent.outcome,
    AuditEvent.detail,
    AuditEvent.prev_hash,
    AuditEvent.hash,
)


class EventCheck(Protocol):
    """Checks what one event refers to outside the log; returns what is wrong, or None.

    The extension point for recordings: an event that finalises a recording carries its
    SHA-256, and a check given to :func:`verify_log` re-hashes the blob and compares.
    """

    async def __call__(self, event: ChainEvent) -> str | None: ...


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What :func:`verify_log` found: counts, and the first broken link (None: all is well)."""

    events: int
    checkpoints: int
    first_broken: Broken | None

    @property
    def ok(self) -> bool:
        """Whether the whole log and every checkpoint check out."""
        return self.first_broken is None

    def to_json(self) -> dict[str, object]:
        """``{ok, events, checkpoints, first_broken: {seq, kind, reason} | null}``."""
        broken = self.first_broken
        return {
            "ok": self.ok,
            "events": self.events,
            "checkpoints": self.checkpoints,
            "first_broken": None
            if broken is None
            else {"seq": broken.seq, "kind": broken.kind, "reason": broken.reason},
        }


async def _last_checkpoint_seq(session: AsyncSession) -> int | None:
    query = select(AuditCheckpoint.seq).order_by(AuditCheckpoint.id.desc()).limit(1)
    return await session.scalar(query)


async def write_checkpoint(
    db: Database, key: Ed25519PrivateKey, *, only_if_moved: bool = False
) -> Checkpoint | None:
    """Sign the current head and store the checkpoint.

    None when the log is empty, or, with ``only_if_moved``, when the last checkpoint already
    names the head. A committed event never changes, so no lock is needed.
    """
    async with db.session() as s, s.begin():
        seq, hash_ = await chain_head(s)
        if seq == 0 or (only_if_moved and await _last_checkpoint_seq(s) == seq):
            return None
        cp = sign_checkpoint(key, seq, hash_, datetime.now(UTC))
        s.add(
            AuditCheckpoint(
                seq=cp.seq, hash=cp.hash, at=cp.at, signature=cp.signature, key_id=cp.key_id
            )
        )
    log.info(
        "audit checkpoint: seq %d hash %s key %s signature %s",
        cp.seq,
        cp.hash,
        cp.key_id,
        cp.signature,
    )
    return cp


async def checkpoint_every(db: Database, key: Ed25519PrivateKey, interval: float) -> None:
    """Write a checkpoint every ``interval`` seconds when the log has grown; runs until
    cancelled. A failed write is logged and tried again next time."""
    while True:
        await asyncio.sleep(interval)
        try:
            await write_checkpoint(db, key, only_if_moved=True)
        except SQLAlchemyError:
            log.exception("could not write an audit checkpoint")


def _checkpoint(row: AuditCheckpoint) -> Checkpoint:
    return Checkpoint(row.seq, row.hash, row.at, row.key_id, row.signature)


async def _walk(
    session: AsyncSession, walker: ChainWalker, checks: Sequence[EventCheck]
) -> Broken | None:
    """Feed every event to ``walker`` in ``seq`` order; the first failed ``checks``, if any."""
    query = select(*_EVENT_COLUMNS).order_by(AuditEvent.seq, AuditEvent.id)
    result = await session.stream(query.execution_options(yield_per=VERIFY_BATCH))
    failed: Broken | None = None
    async for rows in result.partitions():
        for row in rows:
            event = ChainEvent(**row._asdict())
            walker.feed(event)
            for check in checks if failed is None else ():
                reason = await check(event)
                if reason is not None:
                    failed = Broken(event.seq, "artifact", reason)
    return failed


async def verify_log(
    db: Database, public_key: Ed25519PublicKey, checks: Sequence[EventCheck] = ()
) -> VerifyReport:
    """Recompute the whole chain, check every checkpoint against ``public_key`` and the events,
    run ``checks`` on every event, and name the first broken link (the lowest ``seq``)."""
    async with db.session() as s, s.begin():
        # Checkpoints first: every one then names an event the walk below can see.
        rows = await s.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq))
        checkpoints = [_checkpoint(row) for row in rows]
        walker = ChainWalker(frozenset(cp.seq for cp in checkpoints))
        artifact = await _walk(s, walker, checks)
    found = [walker.first_broken, artifact]
    found += [check_checkpoint(cp, public_key, walker.hashes.get(cp.seq)) for cp in checkpoints]
    broken = [b for b in found if b is not None]
    first = min(broken, key=lambda b: b.seq) if broken else None  # ties: the chain's own
    return VerifyReport(walker.events, len(checkpoints), first)
