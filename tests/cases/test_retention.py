"""Retention with a real database and blob folder: old cases lose their recordings and evidence
behind a tombstone event, recent ones and shared blobs stay, and the log still verifies."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from cases.recordings import RecordingCheck
from cases.retention import RetentionReport, run_retention
from store.audit import add_event
from store.blobs import LocalBlobStore
from store.checkpoints import verify_log, write_checkpoint
from store.db import Database
from store.errors import BlobStoreUnavailable
from store.models import AuditEvent, Recording, ReferencePhoto, VerificationAttempt
from tests.banking.world import World
from tests.cases.test_bundle import KEY, Media, add_case_media

KEEP_DAYS = 1826
NOW = datetime.now(UTC)


@pytest.fixture
async def old(db: Database, blobs: LocalBlobStore, world: World) -> Media:
    return await add_case_media(db, blobs, world, closed_at=NOW - timedelta(days=6 * 365), seed=1)


@pytest.fixture
async def recent(db: Database, blobs: LocalBlobStore, world: World) -> Media:
    return await add_case_media(db, blobs, world, closed_at=NOW - timedelta(days=30), seed=2)


async def _size(blobs: LocalBlobStore, media: Media) -> int:
    return sum([await blobs.size(k) for k in media.keys])


async def _exists(blobs: LocalBlobStore, keys: list[str]) -> list[bool]:
    return [await blobs.exists(k) for k in keys]


async def _marks(db: Database, case_id: int) -> list[bool]:
    async with db.session() as s:
        recs = await s.scalars(select(Recording.deleted_at).where(Recording.case_id == case_id))
        attempts = await s.scalars(
            select(VerificationAttempt.evidence_deleted_at).where(
                VerificationAttempt.case_id == case_id
            )
        )
        return [at is not None for at in [*recs, *attempts]]


async def _tombstones(db: Database) -> list[AuditEvent]:
    async with db.session() as s:
        query = select(AuditEvent).where(AuditEvent.action == "retention.deleted")
        return list(await s.scalars(query.order_by(AuditEvent.seq)))


async def _event_count(db: Database) -> int:
    async with db.session() as s:
        return int(await s.scalar(select(func.count()).select_from(AuditEvent)) or 0)


async def test_old_case_goes_recent_stays_and_the_log_verifies(
    db: Database, blobs: LocalBlobStore, old: Media, recent: Media
) -> None:
    await write_checkpoint(db, KEY)
    freed = await _size(blobs, old)
    report = await run_retention(db, blobs, KEEP_DAYS, NOW)
    assert report == RetentionReport(
        dry_run=False,
        cases=1,
        recordings=2,
        evidence=2,
        blobs_deleted=4,
        bytes_freed=freed,
    )
    assert await _exists(blobs, old.keys) == [False] * 4
    assert await _exists(blobs, recent.keys) == [True] * 4
    assert await _marks(db, old.case_id) == [True, True, True]
    assert await _marks(db, recent.case_id) == [False, False, False]
    [tombstone] = await _tombstones(db)
    assert tombstone.case_id == old.case_id and tombstone.actor_kind == "system"
    detail = json.loads(tombstone.detail)
    assert {r["sha256"] for r in detail["recordings"]} == {old.recording_key, old.advisor_key}
    assert {"side", "sha256", "size"} == set(detail["recordings"][0])
    assert detail["evidence"] == sorted([old.evidence_key, old.best_key])
    assert detail["keep_days"] == KEEP_DAYS
    assert (await verify_log(db, KEY.public_key(), [RecordingCheck(db, blobs)])).ok

    events = await _event_count(db)
    again = await run_retention(db, blobs, KEEP_DAYS, NOW)
    assert again == RetentionReport(False, 0, 0, 0, 0, 0)
    assert await _event_count(db) == events
    assert (await verify_log(db, KEY.public_key(), [RecordingCheck(db, blobs)])).ok


async def test_a_recording_gone_without_a_tombstone_is_named(
    db: Database, blobs: LocalBlobStore, recent: Media
) -> None:
    await blobs.delete(recent.recording_key)
    report = await verify_log(db, KEY.public_key(), [RecordingCheck(db, blobs)])
    assert report.first_broken is not None and report.first_broken.kind == "artifact"
    assert "no retention tombstone" in report.first_broken.reason


async def test_dry_run_changes_nothing(
    db: Database, blobs: LocalBlobStore, old: Media, recent: Media
) -> None:
    events, freed = await _event_count(db), await _size(blobs, old)
    report = await run_retention(db, blobs, KEEP_DAYS, NOW, dry_run=True)
    assert report.to_json() == {
        "dry_run": True,
        "cases": 1,
        "recordings": 2,
        "evidence": 2,
        "blobs_deleted": 4,
        "bytes_freed": freed,
    }
    assert await _exists(blobs, old.keys) == [True] * 4
    assert await _marks(db, old.case_id) == [False, False, False]
    assert await _event_count(db) == events


async def test_a_blob_shared_with_a_live_case_is_kept(
    db: Database, blobs: LocalBlobStore, world: World, old: Media
) -> None:
    twin = await add_case_media(db, blobs, world, closed_at=NOW, seed=3, recording_seed=1)
    assert twin.recording_key == old.recording_key
    for dry_run in (True, False):
        report = await run_retention(db, blobs, KEEP_DAYS, NOW, dry_run=dry_run)
        assert report.recordings == 2 and report.blobs_deleted == 3
    assert await _exists(blobs, old.keys) == [True, False, False, False]
    assert await _marks(db, old.case_id) == [True, True, True]


async def test_reference_photos_are_not_touched(
    db: Database, blobs: LocalBlobStore, world: World, old: Media
) -> None:
    async with db.session() as s:
        photos = list(await s.scalars(select(ReferencePhoto.blob_key)))
    assert photos
    await run_retention(db, blobs, 1, NOW + timedelta(days=365 * 10))
    assert await _exists(blobs, photos) == [True] * len(photos)


class _FailingDeletes(LocalBlobStore):
    """A store that goes away when asked to delete: a crash after the commit."""

    async def delete(self, key: str) -> bool:
        raise BlobStoreUnavailable("the store went away")


async def test_a_run_interrupted_after_the_commit_is_finished_by_the_next(
    db: Database, blobs: LocalBlobStore, old: Media
) -> None:
    with pytest.raises(BlobStoreUnavailable):
        await run_retention(db, _FailingDeletes(blobs.root), KEEP_DAYS, NOW)
    assert await _marks(db, old.case_id) == [True, True, True]
    assert await _exists(blobs, old.keys) == [True] * 4
    report = await run_retention(db, blobs, KEEP_DAYS, NOW)
    assert report.cases == 0 and report.blobs_deleted == 4
    assert await _exists(blobs, old.keys) == [False] * 4
    assert len(await _tombstones(db)) == 1


async def test_an_old_co_browse_stream_goes_behind_the_tombstone_too(
    db: Database, blobs: LocalBlobStore, old: Media
) -> None:
    stream = b'{"type":4,"data":{"href":"x"},"timestamp":1}\n'
    key = await blobs.put(stream)
    async with db.session() as s, s.begin():
        await add_event(
            s,
            action="cobrowse.stored",
            outcome="ok",
            actor_kind="system",
            case_id=old.case_id,
            detail={"sha256": key, "events": 1, "bytes": len(stream)},
        )
    await run_retention(db, blobs, KEEP_DAYS, NOW)
    assert not await blobs.exists(key)
    (tombstone,) = await _tombstones(db)
    assert json.loads(tombstone.detail)["cobrowse"] == [{"sha256": key, "size": len(stream)}]
    assert (await verify_log(db, KEY.public_key(), [RecordingCheck(db, blobs)])).ok
    before = await _event_count(db)
    await run_retention(db, blobs, KEEP_DAYS, NOW)  # nothing more to do
    assert await _event_count(db) == before
