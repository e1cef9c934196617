"""Migration 0005 on a database that already has events: it chains them, and back again."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import Connection, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from store.audit import add_event
from store.checkpoints import verify_log, write_checkpoint
from store.config import StoreConfig
from store.db import Database, _make_engine, _sqlite_file, alembic_config, open_database
from store.models import AuditEvent
from tests.store.test_audit_chain import KEY, PUBLIC
from tests.store.test_postgres import reset_schema

_OLD_EVENTS = sa.table(
    "audit_events",
    sa.column("at", sa.DateTime(timezone=True)),
    sa.column("actor_kind", sa.String()),
    sa.column("actor_id", sa.Integer()),
    sa.column("case_id", sa.Integer()),
    sa.column("grant_id", sa.Integer()),
    sa.column("action", sa.String()),
    sa.column("outcome", sa.String()),
    sa.column("detail", sa.Text()),
)
_START = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def _old_rows() -> list[dict[str, object]]:
    """Events as 0003/0004 wrote them; the times are not in id order, on purpose."""
    return [
        {
            "at": _START + timedelta(seconds=(5 - i) * 7, microseconds=i * 1001),
            "actor_kind": "staff" if i % 2 else "customer",
            "actor_id": i,
            "case_id": 40 + i // 2,
            "grant_id": i if i == 3 else None,
            "action": f"old.{i}",
            "outcome": "ok" if i != 2 else "refused",
            "detail": json.dumps({"i": i, "名字": "王芳", "list": [i, None]}, ensure_ascii=False),
        }
        for i in range(6)
    ]


async def _alembic(url: str, revision: str, *, down: bool) -> None:
    engine = _make_engine(make_url(url))

    def run(connection: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(cfg, revision)

    try:
        async with engine.begin() as conn:
            await conn.run_sync(run)
    finally:
        await engine.dispose()


async def _migrate(url: str, revision: str, *, down: bool = False) -> None:
    # Alembic reads its scripts synchronously: a thread (and loop) of its own, as in store.db.
    await asyncio.to_thread(asyncio.run, _alembic(url, revision, down=down))


async def _database_at_0004_with_events(cfg: StoreConfig) -> None:
    url = make_url(cfg.database_url)
    sqlite_file = _sqlite_file(url)
    if sqlite_file is None:
        await reset_schema(cfg.database_url)
    else:
        await asyncio.to_thread(sqlite_file.parent.mkdir, parents=True)
    await _migrate(cfg.database_url, "0004")
    engine = _make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(_OLD_EVENTS.insert(), _old_rows())
    finally:
        await engine.dispose()


async def _hashes(db: Database) -> list[tuple[int, int, str]]:
    async with db.session() as s:
        rows = await s.execute(select(AuditEvent.id, AuditEvent.seq, AuditEvent.hash))
        return sorted(tuple(row) for row in rows)


async def _assert_append_only(db: Database) -> None:
    for statement in ("UPDATE audit_events SET outcome = 'failed'", "DELETE FROM audit_events"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with db.engine.begin() as conn:
                await conn.execute(text(statement))


def _schema(connection: Connection) -> tuple[set[str], set[str]]:
    found = inspect(connection)
    columns = {c["name"] for c in found.get_columns("audit_events")}
    return set(found.get_table_names()), columns


async def test_upgrade_chains_existing_events_in_id_order_and_downgrade_keeps_them(
    any_store: StoreConfig,
) -> None:
    await _database_at_0004_with_events(any_store)
    db = await open_database(any_store)  # 0005: backfill
    try:
        chained = await _hashes(db)
        assert [seq for _, seq, _ in chained] == [1, 2, 3, 4, 5, 6]  # ids 1..6 in order
        assert (await verify_log(db, PUBLIC)).to_json()["ok"] is True
        async with db.session() as s, s.begin():
            await add_event(s, action="new", outcome="ok", actor_kind="system")
        await write_checkpoint(db, KEY)
        report = await verify_log(db, PUBLIC)
        assert (report.ok, report.events, report.checkpoints) == (True, 7, 1)
        await _assert_append_only(db)
        before = await _hashes(db)
    finally:
        await db.close()

    await _migrate(any_store.database_url, "0004", down=True)
    db = Database(_make_engine(make_url(any_store.database_url)))
    try:
        async with db.engine.connect() as conn:
            tables, columns = await conn.run_sync(_schema)
        assert "audit_checkpoints" not in tables
        assert not columns & {"seq", "prev_hash", "hash"} and "detail" in columns
        await _assert_append_only(db)  # the 0003 triggers are back
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM audit_events"))).scalar() == 7
    finally:
        await db.close()

    db = await open_database(any_store)  # up again: the backfill gives the same hashes
    try:
        assert await _hashes(db) == before
        assert (await verify_log(db, PUBLIC)).ok
    finally:
        await db.close()
