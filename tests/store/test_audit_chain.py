"""The hash-chained audit log: built right, kept under concurrent appends, and every tampering
by someone with database access (triggers dropped or disabled) named by ``verify_log``."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from store.audit import add_event
from store.chain import GENESIS, ChainEvent, event_hash
from store.checkpoints import checkpoint_every, verify_log, write_checkpoint
from store.config import StoreConfig
from store.db import Database, open_database
from store.models import AuditCheckpoint, AuditEvent
from store.signing import key_id, sign_checkpoint
from tests.store.test_postgres import reset_schema

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUBLIC = KEY.public_key()


@pytest.fixture
async def db(any_store: StoreConfig) -> AsyncIterator[Database]:
    """A migrated, empty database of each kind."""
    if any_store.database_url.startswith("postgresql"):
        await reset_schema(any_store.database_url)
    database = await open_database(any_store)
    yield database
    await database.close()


async def _append(db: Database, count: int, first: int = 0) -> None:
    for i in range(first, first + count):
        async with db.session() as s, s.begin():
            await add_event(
                s,
                action=f"step.{i}",
                outcome="ok",
                actor_kind="staff",
                actor_id=i,
                case_id=1,
                detail={"i": i},
            )


async def _rows(db: Database) -> list[AuditEvent]:
    async with db.session() as s:
        return list(await s.scalars(select(AuditEvent).order_by(AuditEvent.seq)))


def _independent_hash(prev: str, row: AuditEvent) -> str:
    """The documented format, written out again without ``store.chain``."""
    at = row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC)
    fields = {
        "seq": row.seq,
        "at": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00"),
        "actor_kind": row.actor_kind,
        "actor_id": row.actor_id,
        "case_id": row.case_id,
        "grant_id": row.grant_id,
        "action": row.action,
        "outcome": row.outcome,
        "detail": json.loads(row.detail),
    }
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev + canonical).encode("utf-8")).hexdigest()


async def test_each_event_links_to_the_one_before(db: Database) -> None:
    async with db.session() as s, s.begin():
        await add_event(s, action="case.opened", outcome="ok", actor_kind="customer", actor_id=3)
        await add_event(
            s,
            action="note",
            outcome="refused",
            actor_kind="staff",
            case_id=9,
            grant_id=4,
            detail={"who": "王芳", "list": [1, {"b": 2, "a": None}]},
        )
    await _append(db, 2)
    rows = await _rows(db)
    assert [r.seq for r in rows] == [1, 2, 3, 4]
    prev = GENESIS
    for row in rows:
        assert row.prev_hash == prev
        assert row.hash == _independent_hash(prev, row)
        prev = row.hash
    report = await verify_log(db, PUBLIC)
    assert report.to_json() == {"ok": True, "events": 4, "checkpoints": 0, "first_broken": None}


async def test_a_rolled_back_event_leaves_no_gap(db: Database) -> None:
    await _append(db, 1)
    with pytest.raises(RuntimeError):
        async with db.session() as s, s.begin():
            await add_event(s, action="x", outcome="ok", actor_kind="system")
            raise RuntimeError("the operation failed")
    await _append(db, 1, first=1)
    assert [r.seq for r in await _rows(db)] == [1, 2]
    assert (await verify_log(db, PUBLIC)).ok


async def test_concurrent_appends_keep_one_valid_chain(db: Database) -> None:
    """Transactions that read first and then append at once queue on the chain's lock."""
    count = 16

    async def one(i: int) -> None:
        async with db.session() as s, s.begin():
            await s.scalar(select(func.count()).select_from(AuditEvent))  # callers read first
            await asyncio.sleep(0)
            await add_event(
                s, action="together", outcome="ok", actor_kind="system", detail={"i": i}
            )
            await asyncio.sleep(0.01)  # hold the transaction open while the others try

    await asyncio.gather(*(one(i) for i in range(count)))
    rows = await _rows(db)
    assert [r.seq for r in rows] == list(range(1, count + 1))
    assert sorted(json.loads(r.detail)["i"] for r in rows) == list(range(count))
    assert (await verify_log(db, PUBLIC)).ok


async def test_a_repeated_seq_is_refused_by_the_database(db: Database) -> None:
    await _append(db, 1)
    (row,) = await _rows(db)
    copy = AuditEvent(
        seq=1, prev_hash=GENESIS, hash=row.hash, at=row.at, actor_kind="system", action="dup",
        outcome="ok", detail="{}",
    )  # fmt: skip
    with pytest.raises(IntegrityError):
        async with db.session() as s, s.begin():
            s.add(copy)


async def test_checkpoints_are_append_only(db: Database) -> None:
    await _append(db, 1)
    assert await write_checkpoint(db, KEY) is not None
    with pytest.raises(DBAPIError, match="append-only"):
        async with db.session() as s, s.begin():
            await s.execute(text("UPDATE audit_checkpoints SET seq = 2"))
    with pytest.raises(DBAPIError, match="append-only"):
        async with db.session() as s, s.begin():
            await s.execute(text("DELETE FROM audit_checkpoints"))


# ---- tampering, as someone with access to the database would do it --------------------------

_TRIGGERS = (
    "audit_events_no_update",
    "audit_events_no_delete",
    "audit_checkpoints_no_update",
    "audit_checkpoints_no_delete",
)


@asynccontextmanager
async def attacker(db: Database) -> AsyncIterator[AsyncConnection]:
    """A connection on which the append-only triggers no longer fire."""
    async with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # A superuser's session that skips ordinary triggers (as replication does).
            await conn.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            for trigger in _TRIGGERS:
                await conn.execute(text(f"DROP TRIGGER IF EXISTS {trigger}"))
        yield conn


async def _run(db: Database, *statements: str) -> None:
    async with attacker(db) as conn:
        for statement in statements:
            await conn.execute(text(statement))


async def _rehash_from(db: Database, seq: int) -> str:
    """Recompute every hash from ``seq`` on, as an attacker who read the docstring would;
    returns the new head hash."""
    rows = await _rows(db)
    prev = rows[seq - 2].hash if seq > 1 else GENESIS
    async with attacker(db) as conn:
        for row in rows[seq - 1 :]:
            fields = ChainEvent(
                row.seq, row.at, row.actor_kind, row.actor_id, row.case_id, row.grant_id,
                row.action, row.outcome, row.detail, prev,
            )  # fmt: skip
            prev = event_hash(prev, fields)
            await conn.execute(
                text("UPDATE audit_events SET prev_hash = :p, hash = :h WHERE seq = :s"),
                {"p": fields.prev_hash, "h": prev, "s": row.seq},
            )
    return prev


async def _change_outcome_and_rehash(db: Database) -> None:
    await _run(db, "UPDATE audit_events SET outcome = 'refused' WHERE seq = 3")
    await _rehash_from(db, 3)


async def _forge_checkpoint_hash(db: Database) -> None:
    """Rewrite the chain, then make the checkpoint name the new head (cannot re-sign it)."""
    await _run(db, "UPDATE audit_events SET outcome = 'refused' WHERE seq = 3")
    head = await _rehash_from(db, 3)
    await _run(db, f"UPDATE audit_checkpoints SET hash = '{head}'")


async def _resign_with_another_key(db: Database, keep_key_id: bool) -> None:
    await _run(db, "UPDATE audit_events SET outcome = 'refused' WHERE seq = 3")
    head = await _rehash_from(db, 3)
    forger = Ed25519PrivateKey.generate()
    cp = sign_checkpoint(forger, 6, head, datetime.now(UTC))
    kid = key_id(PUBLIC) if keep_key_id else cp.key_id
    await _run(
        db,
        f"UPDATE audit_checkpoints SET hash = '{head}', signature = '{cp.signature}', "
        f"key_id = '{kid}'",
    )


async def _resign_keeping_key_id(db: Database) -> None:
    await _resign_with_another_key(db, keep_key_id=True)


async def _resign_with_own_key_id(db: Database) -> None:
    await _resign_with_another_key(db, keep_key_id=False)


async def _garble_signature(db: Database) -> None:
    bad = base64.b64encode(b"\x00" * 64).decode()
    await _run(db, f"UPDATE audit_checkpoints SET signature = '{bad}'")


def _statements(*statements: str) -> Callable[[Database], Awaitable[None]]:
    async def tamper(db: Database) -> None:
        await _run(db, *statements)

    return tamper


_SWAP_3_AND_4 = (
    "UPDATE audit_events SET seq = -1 WHERE seq = 3",
    "UPDATE audit_events SET seq = 3 WHERE seq = 4",
    "UPDATE audit_events SET seq = 4 WHERE seq = -1",
)
TAMPERING: dict[str, tuple[Callable[[Database], Awaitable[None]], int, str, str]] = {
    "changed outcome": (
        _statements("UPDATE audit_events SET outcome = 'failed' WHERE seq = 3"),
        3, "hash_mismatch", "hash mismatch at seq 3",
    ),
    "changed detail": (
        _statements("""UPDATE audit_events SET detail = '{"i": 99}' WHERE seq = 4"""),
        4, "hash_mismatch", "hash mismatch at seq 4",
    ),
    "changed actor": (
        _statements("UPDATE audit_events SET actor_id = 1000 WHERE seq = 2"),
        2, "hash_mismatch", "hash mismatch at seq 2",
    ),
    "changed stored hash": (
        _statements(f"UPDATE audit_events SET hash = '{'ab' * 32}' WHERE seq = 5"),
        5, "hash_mismatch", "hash mismatch at seq 5",
    ),
    "deleted event": (
        _statements("DELETE FROM audit_events WHERE seq = 3"),
        3, "seq_gap", "seq gap after 2",
    ),
    "deleted first event": (
        _statements("DELETE FROM audit_events WHERE seq = 1"),
        1, "seq_gap", "seq gap after 0",
    ),
    "swapped events": (_statements(*_SWAP_3_AND_4), 3, "prev_hash_mismatch", "seq 3"),
    "cut short": (
        _statements("DELETE FROM audit_events WHERE seq = 6"),
        6, "checkpoint_missing_event", "cut short",
    ),
    "rewritten with fresh hashes": (
        _change_outcome_and_rehash, 6, "checkpoint_hash_mismatch", "no longer matches",
    ),
    "checkpoint hash forged": (
        _forge_checkpoint_hash, 6, "checkpoint_signature", "signature fails",
    ),
    "re-signed, real key id": (
        _resign_keeping_key_id, 6, "checkpoint_signature", "signature fails",
    ),
    "re-signed with another key": (
        _resign_with_own_key_id, 6, "checkpoint_key", "not the given key",
    ),
    "garbled signature": (_garble_signature, 6, "checkpoint_signature", "signature fails"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(TAMPERING))
async def test_tampering_is_named(db: Database, case: str) -> None:
    tamper, seq, kind, says = TAMPERING[case]
    await _append(db, 6)
    await write_checkpoint(db, KEY)
    assert (await verify_log(db, PUBLIC)).ok
    await tamper(db)
    report = await verify_log(db, PUBLIC)
    assert not report.ok
    assert report.first_broken is not None
    assert (report.first_broken.seq, report.first_broken.kind) == (seq, kind), report
    assert says in report.first_broken.reason
    assert report.checkpoints == 1


async def test_a_rewrite_after_the_last_checkpoint_needs_the_next_one(db: Database) -> None:
    """What checkpoints cannot do: a rewrite of events no checkpoint covers yet goes unseen
    until the next checkpoint is signed (the server signs every few minutes)."""
    await _append(db, 3)
    await write_checkpoint(db, KEY)
    await _append(db, 3, first=3)
    await _change_outcome_and_rehash(db)  # rewrites from seq 3: covered by nothing but seq 3
    broken = (await verify_log(db, PUBLIC)).first_broken
    assert broken is not None and broken.kind == "checkpoint_hash_mismatch" and broken.seq == 3


async def test_verify_with_another_public_key_fails_every_checkpoint(db: Database) -> None:
    await _append(db, 2)
    await write_checkpoint(db, KEY)
    report = await verify_log(db, Ed25519PrivateKey.generate().public_key())
    assert report.first_broken is not None
    assert (report.first_broken.seq, report.first_broken.kind) == (2, "checkpoint_key")


async def test_an_artifact_check_is_named(db: Database) -> None:
    """The extension point for recordings: a check of what an event refers to."""
    await _append(db, 3)

    async def recording_matches(event: ChainEvent) -> str | None:
        return "recording hash differs" if event.seq == 2 else None

    report = await verify_log(db, PUBLIC, [recording_matches])
    assert report.first_broken is not None
    assert (report.first_broken.seq, report.first_broken.kind) == (2, "artifact")


# ---- checkpoints --------------------------------------------------------------------------


async def _checkpoint_seqs(db: Database) -> list[int]:
    async with db.session() as s:
        return list(await s.scalars(select(AuditCheckpoint.seq).order_by(AuditCheckpoint.id)))


async def test_write_checkpoint_signs_the_head(db: Database) -> None:
    assert await write_checkpoint(db, KEY) is None  # empty log: nothing to sign
    await _append(db, 2)
    cp = await write_checkpoint(db, KEY)
    assert cp is not None and cp.seq == 2 and cp.key_id == key_id(PUBLIC)
    assert cp.hash == (await _rows(db))[-1].hash
    assert await write_checkpoint(db, KEY, only_if_moved=True) is None
    assert await _checkpoint_seqs(db) == [2]
    assert (await verify_log(db, PUBLIC)).to_json()["checkpoints"] == 1


async def _wait_for(probe: Callable[[], Awaitable[bool]]) -> None:
    """Poll the database until ``probe`` holds (5 s at most)."""
    for _ in range(250):
        if await probe():
            return
        await asyncio.sleep(0.02)
    pytest.fail("the checkpoint task wrote nothing")


async def test_periodic_checkpoints_only_when_the_log_grew(db: Database) -> None:
    task = asyncio.create_task(checkpoint_every(db, KEY, 0.05))
    try:
        await asyncio.sleep(0.15)
        assert await _checkpoint_seqs(db) == []  # nothing to sign yet
        await _append(db, 2)

        async def signed(seq: int) -> bool:
            return (await _checkpoint_seqs(db))[-1:] == [seq]

        await _wait_for(lambda: signed(2))
        so_far = await _checkpoint_seqs(db)
        await asyncio.sleep(0.2)
        assert await _checkpoint_seqs(db) == so_far  # unchanged head: no new checkpoint
        await _append(db, 1, first=2)
        await _wait_for(lambda: signed(3))
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert (await verify_log(db, PUBLIC)).ok
