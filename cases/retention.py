"""Retention: a case's recordings and verification evidence go once it has been closed long
enough (``AuditConfig.retention_days``; ``cloudbranch retention run``).

For each case closed more than ``keep_days`` before ``now`` that still has recordings or
evidence, one transaction marks the rows (``recordings.deleted_at``,
``verification_attempts.evidence_deleted_at``) and appends one tombstone event,
``retention.deleted``, listing what goes, so that ``audit verify`` can tell a deletion from a
loss. The blobs are deleted only after that transaction commits.

The run is idempotent and finishes an interrupted one: a crash after the commit leaves rows
marked whose blobs still exist, and every run deletes the blobs of marked rows that are still
there. A blob is content-addressed, so identical bytes are one blob: a key still referenced by
a row that is not marked (another case's recording or evidence, a reference photo or face
crop) is never deleted. Reference photos belong to the customer, not the case: never touched.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from cases.artifacts import COBROWSE_STORED, TOMBSTONE, listed, streams
from store.audit import add_event
from store.blobs import BlobStore
from store.chain import format_at
from store.db import Database
from store.models import (
    AuditEvent,
    Case,
    Recording,
    ReferencePhoto,
    ReferenceTemplate,
    VerificationAttempt,
)

log = logging.getLogger(__name__)

_IN_BATCH = 500  # keys per IN (...) query


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """What a run removed (or, with ``dry_run``, would remove).

    ``cases``: cases tombstoned; ``recordings``: recording rows marked; ``evidence``: evidence
    blob keys marked; ``blobs_deleted``/``bytes_freed``: blobs actually removed from the store
    (including leftovers of an interrupted run; shared blobs are kept and not counted).
    """

    dry_run: bool
    cases: int
    recordings: int
    evidence: int
    blobs_deleted: int
    bytes_freed: int

    def to_json(self) -> dict[str, object]:
        """Every field, for the command's output."""
        return {
            "dry_run": self.dry_run,
            "cases": self.cases,
            "recordings": self.recordings,
            "evidence": self.evidence,
            "blobs_deleted": self.blobs_deleted,
            "bytes_freed": self.bytes_freed,
        }


@dataclass(frozen=True, slots=True)
class _Expired:
    """What one expired case still holds: recording rows and attempts with evidence."""

    case_id: int
    closed_at: datetime
    recordings: list[Recording]
    attempts: list[VerificationAttempt]
    streams: list[tuple[str, int]]  # co-browse streams (sha256, bytes) no tombstone lists yet

    @property
    def keys(self) -> set[str]:
        streams = {key for key, _ in self.streams}
        return {r.blob_key for r in self.recordings} | set(_evidence_keys(self.attempts)) | streams

    @property
    def empty(self) -> bool:
        return not self.recordings and not self.attempts and not self.streams


async def _streams(s: AsyncSession, case_id: int) -> list[tuple[str, int]]:
    """Co-browse streams of the case (``cobrowse.stored`` events) not yet tombstoned."""
    rows = await s.execute(
        select(AuditEvent.action, AuditEvent.detail).where(
            AuditEvent.case_id == case_id,
            AuditEvent.action.in_((COBROWSE_STORED, TOMBSTONE)),
        )
    )
    stored, gone = streams((action, detail) for action, detail in rows)
    return sorted(
        (key, int(str(detail.get("bytes", 0)))) for key, detail in stored.items() if key not in gone
    )


def _evidence_keys(attempts: Iterable[VerificationAttempt]) -> list[str]:
    keys = (k for a in attempts for k in (a.evidence_blob_key, a.best_frame_blob_key))
    return sorted({k for k in keys if k})


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def _expired_case_ids(s: AsyncSession, cutoff: datetime) -> list[tuple[int, datetime]]:
    query = (
        select(Case.id, Case.closed_at)
        .where(Case.closed_at.is_not(None), Case.closed_at < cutoff)
        .order_by(Case.id)
    )
    return [(row.id, _utc(row.closed_at)) for row in await s.execute(query)]


async def _holdings(s: AsyncSession, case_id: int, closed_at: datetime, *, lock: bool) -> _Expired:
    """The case's recordings and evidence not yet marked deleted.

    ``lock``: lock the rows (PostgreSQL), so that a concurrent run waits, then finds them
    marked and skips the case instead of writing a second tombstone.
    """
    recordings = select(Recording).where(
        Recording.case_id == case_id, Recording.deleted_at.is_(None)
    )
    attempts = (
        select(VerificationAttempt)
        .where(
            VerificationAttempt.case_id == case_id,
            VerificationAttempt.evidence_deleted_at.is_(None),
            or_(
                VerificationAttempt.evidence_blob_key.is_not(None),
                VerificationAttempt.best_frame_blob_key.is_not(None),
            ),
        )
        .order_by(VerificationAttempt.id)
    )
    if lock:
        recordings, attempts = recordings.with_for_update(), attempts.with_for_update()
    found = await s.scalars(recordings.order_by(Recording.side))
    held = await s.scalars(attempts)
    return _Expired(case_id, closed_at, list(found), list(held), await _streams(s, case_id))


async def _tombstone(s: AsyncSession, held: _Expired, keep_days: int) -> None:
    """Mark the rows and append the case's one ``retention.deleted`` event."""
    now = datetime.now(UTC)  # when it happened; the run's ``now`` only sets the cutoff
    for rec in held.recordings:
        rec.deleted_at = now
    for attempt in held.attempts:
        attempt.evidence_deleted_at = now
    await s.flush()
    await add_event(
        s,
        action=TOMBSTONE,
        outcome="ok",
        actor_kind="system",
        case_id=held.case_id,
        detail={
            "recordings": [
                {"side": r.side, "sha256": r.blob_key, "size": r.size} for r in held.recordings
            ],
            "evidence": _evidence_keys(held.attempts),
            "cobrowse": [{"sha256": key, "size": size} for key, size in held.streams],
            "keep_days": keep_days,
            "closed_at": format_at(held.closed_at),
        },
    )


async def _marked_keys(s: AsyncSession) -> set[str]:
    """Keys of every row marked deleted: their blobs should be gone."""
    keys = set(await s.scalars(select(Recording.blob_key).where(Recording.deleted_at.is_not(None))))
    rows = await s.execute(
        select(
            VerificationAttempt.evidence_blob_key, VerificationAttempt.best_frame_blob_key
        ).where(VerificationAttempt.evidence_deleted_at.is_not(None))
    )
    keys.update(k for row in rows for k in row if k)
    tombstones = await s.scalars(select(AuditEvent.detail).where(AuditEvent.action == TOMBSTONE))
    for detail in tombstones:
        keys.update(listed(detail, "cobrowse"))
    return keys


async def _still_used(s: AsyncSession, keys: list[str], ignore_cases: set[int]) -> set[str]:
    """The ``keys`` some live row refers to (rows of ``ignore_cases`` are about to go)."""
    used: set[str] = set()
    attempt = VerificationAttempt
    for i in range(0, len(keys), _IN_BATCH):
        batch = keys[i : i + _IN_BATCH]
        queries = [
            select(Recording.blob_key).where(
                Recording.blob_key.in_(batch),
                Recording.deleted_at.is_(None),
                Recording.case_id.not_in(ignore_cases),
            ),
            select(ReferencePhoto.blob_key).where(ReferencePhoto.blob_key.in_(batch)),
            select(ReferenceTemplate.crop_blob_key).where(
                ReferenceTemplate.crop_blob_key.in_(batch)
            ),
        ]
        for column in (attempt.evidence_blob_key, attempt.best_frame_blob_key):
            live = attempt.evidence_deleted_at.is_(None), attempt.case_id.not_in(ignore_cases)
            queries.append(select(column).where(column.in_(batch), *live))
        for query in queries:
            used.update(k for k in await s.scalars(query) if k)
    return used


async def _remove_blobs(blobs: BlobStore, keys: Iterable[str], dry_run: bool) -> tuple[int, int]:
    """Delete (or, dry, measure) the blobs under ``keys`` that exist: (count, bytes)."""
    count = size = 0
    for key in sorted(keys):
        if not await blobs.exists(key):
            continue
        length = await blobs.size(key)
        if dry_run or await blobs.delete(key):
            count, size = count + 1, size + length
    return count, size


async def run_retention(
    db: Database, blobs: BlobStore, keep_days: int, now: datetime, *, dry_run: bool = False
) -> RetentionReport:
    """Delete the recordings and evidence of cases closed more than ``keep_days`` before ``now``.

    One transaction per case marks its rows and appends its ``retention.deleted`` tombstone;
    blobs go after the commits. Idempotent: a second run changes nothing, and a run after a
    crash deletes the blobs the crashed one left behind. ``dry_run`` reports what would go and
    changes nothing.
    """
    if keep_days < 1:
        raise ValueError(f"keep_days must be at least 1: {keep_days}")
    now = _utc(now)
    async with db.session() as s, s.begin():
        expired = await _expired_case_ids(s, now - timedelta(days=keep_days))
    done: list[_Expired] = []
    for case_id, closed_at in expired:
        async with db.session() as s, s.begin():
            held = await _holdings(s, case_id, closed_at, lock=not dry_run)
            if held.empty:
                continue  # nothing left, or another run got here first
            if not dry_run:
                await _tombstone(s, held, keep_days)
        done.append(held)
        log.info("retention: case %d expired", case_id, extra={"case_id": case_id})
    async with db.session() as s, s.begin():
        candidates = await _marked_keys(s) | {k for held in done for k in held.keys}
        ignore = {held.case_id for held in done} if dry_run else set()
        doomed = candidates - await _still_used(s, sorted(candidates), ignore)
    count, freed = await _remove_blobs(blobs, doomed, dry_run)
    return RetentionReport(
        dry_run=dry_run,
        cases=len(done),
        recordings=sum(len(h.recordings) for h in done),
        evidence=sum(len(_evidence_keys(h.attempts)) for h in done),
        blobs_deleted=count,
        bytes_freed=freed,
    )
