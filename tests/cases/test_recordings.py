"""Finished recordings reach the blob store, the case and the audit log; ``audit verify``'s check
names a recording whose bytes changed or vanished, and accepts one deleted by retention."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, update

from cases.recordings import RecordingCheck, RecordingSink
from cases.review import ReviewDesk
from cases.states import CaseState
from cases.store import CaseStore
from media.recorder import RecordedFile
from store.audit import add_event
from store.blobs import LocalBlobStore
from store.checkpoints import verify_log
from store.models import AuditEvent, Case, Recording
from tests.banking.world import World, now


async def _public_id(world: World) -> str:
    async with world.db.session() as s:
        public_id = await s.scalar(select(Case.public_id).where(Case.id == world.case))
    assert public_id is not None
    return public_id


def _spool(tmp_path: Path, side: str, payload: bytes, **fields: object) -> RecordedFile:
    path = tmp_path / "spool" / f"{side}.webm"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    values: dict[str, Any] = {
        "duration_ms": 61_000,
        "offset_ms": 250,
        "started_at": now(),
        "video_frames": 1830,
        "audio_frames": 3050,
        "dropped_frames": 0,
        "recovered": False,
        **fields,
    }
    call_id = str(values.pop("call_id"))
    return RecordedFile(call_id, side, path, digest, len(payload), **values)


async def _events(world: World, action: str) -> list[AuditEvent]:
    async with world.db.session() as s:
        return list((await s.scalars(select(AuditEvent).where(AuditEvent.action == action))).all())


async def test_a_finished_recording_is_stored_on_its_case_and_logged(
    world: World, blobs: LocalBlobStore, tmp_path: Path
) -> None:
    call_id = await _public_id(world)
    files = [
        _spool(tmp_path, "customer", b"customer-webm" * 1000, call_id=call_id),
        _spool(tmp_path, "advisor", b"advisor-webm" * 900, call_id=call_id, offset_ms=40),
    ]
    assert await RecordingSink(world.db, blobs).store(files) == 2
    assert not any(f.path.exists() for f in files)  # the spool is emptied
    async with world.db.session() as s:
        rows = (await s.scalars(select(Recording).order_by(Recording.side))).all()
    assert [(r.side, r.blob_key, r.offset_ms, r.size) for r in rows] == [
        ("advisor", files[1].sha256, 40, files[1].size),
        ("customer", files[0].sha256, 250, files[0].size),
    ]
    assert await blobs.get(files[0].sha256) == b"customer-webm" * 1000
    events = await _events(world, "recording.stored")
    assert sorted(json.loads(e.detail)["side"] for e in events) == ["advisor", "customer"]
    # Storing the same file again (a retry) adds nothing.
    again = _spool(tmp_path, "customer", b"customer-webm" * 1000, call_id=call_id)
    assert await RecordingSink(world.db, blobs).store([again]) == 1
    assert len(await _events(world, "recording.stored")) == 2


async def test_a_recording_for_no_case_stays_in_the_spool(
    world: World, blobs: LocalBlobStore, tmp_path: Path
) -> None:
    file = _spool(tmp_path, "customer", b"orphan", call_id="no-such-case")
    assert await RecordingSink(world.db, blobs).store([file]) == 0
    assert file.path.exists()


async def test_a_recovered_recording_updates_the_flags_of_a_closed_case(
    world: World, blobs: LocalBlobStore, tmp_path: Path
) -> None:
    call_id = await _public_id(world)
    async with world.db.session() as s, s.begin():
        await s.execute(update(Case).where(Case.id == world.case).values(call_started_at=now()))
    await CaseStore(world.db).move(call_id, CaseState.CLOSED, ended_by="system")
    file = _spool(tmp_path, "customer", b"after-a-crash", call_id=call_id, recovered=True)
    await RecordingSink(world.db, blobs).store([file])
    detail = await ReviewDesk(world.db).detail(world.staff, call_id)
    assert "recording_recovered" in detail.summary.flags
    assert "recording_missing" not in detail.summary.flags


async def test_audit_verify_names_a_changed_or_vanished_recording(
    world: World, blobs: LocalBlobStore, tmp_path: Path
) -> None:
    call_id = await _public_id(world)
    file = _spool(tmp_path, "customer", b"x" * 50_000, call_id=call_id)
    await RecordingSink(world.db, blobs).store([file])
    key = Ed25519PrivateKey.generate()
    check = RecordingCheck(world.db, blobs)
    assert (await verify_log(world.db, key.public_key(), [check])).ok
    assert check.checked == 1
    (stored,) = await _events(world, "recording.stored")

    path = blobs.root / file.sha256[:2] / file.sha256
    data = bytearray(path.read_bytes())
    data[25_000] ^= 1
    path.write_bytes(bytes(data))
    report = await verify_log(world.db, key.public_key(), [RecordingCheck(world.db, blobs)])
    assert report.first_broken is not None
    assert (report.first_broken.seq, report.first_broken.kind) == (stored.seq, "artifact")
    assert "no longer match" in report.first_broken.reason

    path.unlink()
    report = await verify_log(world.db, key.public_key(), [RecordingCheck(world.db, blobs)])
    assert report.first_broken is not None and "missing" in report.first_broken.reason

    # Deleted on purpose: the tombstone of the retention run names it.
    async with world.db.session() as s, s.begin():
        await add_event(
            s,
            action="retention.deleted",
            outcome="ok",
            actor_kind="system",
            case_id=world.case,
            detail={"recordings": [{"side": "customer", "sha256": file.sha256}]},
        )
    assert (await verify_log(world.db, key.public_key(), [RecordingCheck(world.db, blobs)])).ok


async def test_a_tombstone_of_another_case_does_not_excuse_a_missing_recording(
    world: World, blobs: LocalBlobStore, tmp_path: Path
) -> None:
    call_id = await _public_id(world)
    file = _spool(tmp_path, "advisor", b"y" * 1000, call_id=call_id)
    await RecordingSink(world.db, blobs).store([file])
    await blobs.delete(file.sha256)
    async with world.db.session() as s, s.begin():
        await add_event(
            s,
            action="retention.deleted",
            outcome="ok",
            actor_kind="system",
            case_id=world.bob_case,
            detail={"recordings": [{"side": "advisor", "sha256": file.sha256}]},
        )
    key = Ed25519PrivateKey.generate()
    report = await verify_log(world.db, key.public_key(), [RecordingCheck(world.db, blobs)])
    assert not report.ok


async def test_audit_verify_names_a_changed_co_browse_stream(
    world: World, blobs: LocalBlobStore
) -> None:
    stream = b'{"type":4,"data":{},"timestamp":1}\n'
    key_ = await blobs.put(stream)
    async with world.db.session() as s, s.begin():
        stored = await add_event(
            s,
            action="cobrowse.stored",
            outcome="ok",
            actor_kind="system",
            case_id=world.case,
            detail={"sha256": key_, "events": 1, "bytes": len(stream)},
        )
    key = Ed25519PrivateKey.generate()
    assert (await verify_log(world.db, key.public_key(), [RecordingCheck(world.db, blobs)])).ok
    (blobs.root / key_[:2] / key_).write_bytes(stream.replace(b"4", b"5"))
    report = await verify_log(world.db, key.public_key(), [RecordingCheck(world.db, blobs)])
    assert report.first_broken is not None and report.first_broken.seq == stored.seq
    assert "co-browse stream" in report.first_broken.reason
