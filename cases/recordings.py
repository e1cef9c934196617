"""Finished call recordings: into the blob store, onto the case, into the audit log — and checked.

``media`` writes each party's recording into a spool folder and hands back the finished files
(:class:`RecordedFile`). :class:`RecordingSink` stores each in the blob store under its SHA-256,
adds a ``recordings`` row and a ``recording.stored`` audit event in one transaction, then removes
the spool file. :class:`RecordingCheck` is the ``audit verify`` check: every stored recording
must still be in the blob store with the bytes its event names, unless a ``retention.deleted``
tombstone of the same case says it was deleted on purpose.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from cases.artifacts import COBROWSE_STORED, RECORDING_STORED, TOMBSTONE, listed
from cases.review import open_review
from cases.states import CaseState
from media.recorder import RecordedFile, discard
from store.audit import add_event
from store.blobs import BlobStore
from store.chain import ChainEvent
from store.db import Database
from store.errors import BlobNotFound, StoreError
from store.models import AuditEvent, Case, Recording

log = logging.getLogger(__name__)

# Events that name a stored blob, and the list of the tombstone that may excuse its absence.
CHECKED = {RECORDING_STORED: "recordings", COBROWSE_STORED: "cobrowse"}
CONTENT_TYPE = "video/webm"


class RecordingSink:
    """Stores finished recordings of calls (a call's id is its case's public id)."""

    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self._db = db
        self._blobs = blobs

    async def store(self, files: Sequence[RecordedFile]) -> int:
        """Store every file; returns how many were stored. A file that cannot be stored is
        logged and left in the spool folder (the next start's recovery tries it again)."""
        stored = 0
        for file in files:
            try:
                await self._store_one(file)
            except (StoreError, OSError, LookupError, IntegrityError):
                log.exception(
                    "could not store the %s recording", file.side, extra={"case_id": file.call_id}
                )
                continue
            stored += 1
            await asyncio.to_thread(discard, file.path)
        return stored

    async def _store_one(self, file: RecordedFile) -> None:
        key = await self._blobs.put_file(file.path)
        if key != file.sha256:
            # The file changed after the recorder hashed it: the store's hash is what counts.
            log.error(
                "recording hash changed after finishing (%s != %s)",
                key,
                file.sha256,
                extra={"case_id": file.call_id},
            )
        async with self._db.session() as s, s.begin():
            case = await s.scalar(select(Case).where(Case.public_id == file.call_id))
            if case is None:
                raise LookupError(f"no case {file.call_id!r} for a recording")
            existing = await s.scalar(
                select(Recording).where(Recording.case_id == case.id, Recording.side == file.side)
            )
            if existing is not None:
                if existing.blob_key != key:
                    raise LookupError(f"case {file.call_id} already has a {file.side} recording")
                return
            s.add(
                Recording(
                    case_id=case.id,
                    side=file.side,
                    blob_key=key,
                    content_type=CONTENT_TYPE,
                    size=file.size,
                    duration_ms=file.duration_ms,
                    offset_ms=file.offset_ms,
                    clock_zero=file.started_at,
                    video_frames=file.video_frames,
                    audio_frames=file.audio_frames,
                    dropped_frames=file.dropped_frames,
                    recovered=file.recovered,
                    stored_at=datetime.now(UTC),
                )
            )
            await s.flush()
            if case.state == CaseState.CLOSED.value:  # recovered after the case closed
                await open_review(s, case)
            await add_event(
                s,
                action=RECORDING_STORED,
                outcome="ok",
                actor_kind="system",
                case_id=case.id,
                detail={
                    "side": file.side,
                    "sha256": key,
                    "size": file.size,
                    "duration_ms": file.duration_ms,
                    "offset_ms": file.offset_ms,
                    "clock_zero": file.started_at,
                    "recovered": file.recovered,
                    "dropped_frames": file.dropped_frames,
                },
            )


class RecordingCheck:
    """``audit verify``'s check of recordings (a ``store.checkpoints.EventCheck``)."""

    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self._db = db
        self._blobs = blobs
        self.checked = 0

    async def __call__(self, event: ChainEvent) -> str | None:
        """What is wrong with the recording (or co-browse stream) a ``recording.stored``
        (``cobrowse.stored``) event names, or None."""
        listed_under = CHECKED.get(event.action)
        if listed_under is None:
            return None
        try:
            detail = json.loads(event.detail)
            key = str(detail["sha256"])
        except (ValueError, KeyError, TypeError):
            return f"{event.action} event without a readable sha256"
        what = "co-browse stream"
        if event.action == RECORDING_STORED:
            what = f"{detail.get('side', '?')} recording"
        where = f"{what} of case #{event.case_id} (sha256 {key[:12]}…)"
        if await self._tombstoned(event.case_id, key, listed_under):
            return None
        self.checked += 1
        try:
            if not await self._blobs.verify(key):
                return f"{where}: the stored bytes no longer match their SHA-256"
        except BlobNotFound:
            return f"{where}: missing from the blob store, and no retention tombstone says why"
        except StoreError as err:
            return f"{where}: cannot be read ({err})"
        return None

    async def _tombstoned(self, case_id: int | None, key: str, listed_under: str) -> bool:
        async with self._db.session() as s:
            rows = await s.scalars(
                select(AuditEvent.detail).where(
                    AuditEvent.case_id == case_id, AuditEvent.action == TOMBSTONE
                )
            )
            return any(key in listed(raw, listed_under) for raw in rows.all())
