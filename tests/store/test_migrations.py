"""The migrations build exactly the schema of ``store.models``."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, delete, event, inspect, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from store.audit import add_event
from store.config import StoreConfig
from store.db import _on_sqlite_connect, alembic_config, open_database
from store.models import AuditEvent, Base, Card, Customer


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def test_migrated_schema_matches_models(store_config: StoreConfig) -> None:
    db = await open_database(store_config)
    try:
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    finally:
        await db.close()
    assert tables == set(Base.metadata.tables) | {"alembic_version"}


async def test_database_is_at_head(store_config: StoreConfig) -> None:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    db = await open_database(store_config)
    try:
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_current_revision) == head
    finally:
        await db.close()


async def test_open_twice_is_idempotent(store_config: StoreConfig) -> None:
    first = await open_database(store_config)
    await first.close()
    second = await open_database(store_config)
    try:
        async with second.engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await second.close()


async def test_sqlite_file_created_with_wal_and_foreign_keys(store_config: StoreConfig) -> None:
    db = await open_database(store_config)
    try:
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
        # A card for a customer that does not exist is refused.
        card = Card(
            customer_id=999,
            number_masked="6222 **** **** 1234",
            last4="1234",
            created_at=datetime.now(UTC),
        )
        with pytest.raises(IntegrityError):
            async with db.session() as s, s.begin():
                s.add(card)
    finally:
        await db.close()
    db_file = Path(store_config.database_url.removeprefix("sqlite+aiosqlite:///"))
    assert await asyncio.to_thread(db_file.is_file)


async def test_session_objects_usable_after_commit(store_config: StoreConfig) -> None:
    db = await open_database(store_config)
    try:
        async with db.session() as s, s.begin():
            rows = (await s.execute(select(Card))).scalars().all()
        assert rows == []
    finally:
        await db.close()


async def test_migrations_work_from_another_cwd(
    store_config: StoreConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    db = await open_database(store_config)
    await db.close()


async def test_comparison_sees_a_missing_schema(tmp_path: Path) -> None:
    """Guard against a vacuous comparison: an empty database differs from the models."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(_diff)
    finally:
        await engine.dispose()
    added = {d[1].name for d in diff if isinstance(d, tuple) and d[0] == "add_table"}
    assert added == set(Base.metadata.tables)


def _sync_engine(db_file: Path) -> Engine:
    engine = create_engine(f"sqlite:///{db_file}")
    event.listen(engine, "connect", _on_sqlite_connect)
    return engine


def _migrate_sqlite(db_file: Path, revision: str, *, down: bool) -> None:
    """Run Alembic on a synchronous connection with the app's SQLite settings (in a thread)."""
    engine = _sync_engine(db_file)
    try:
        with engine.begin() as conn:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            (command.downgrade if down else command.upgrade)(cfg, revision)
    finally:
        engine.dispose()


def _schema(db_file: Path) -> tuple[set[str], set[str], list[str], list[object]]:
    """Tables, columns of ``cards``, the cards' last4 and the diff to the models (in a thread)."""
    engine = _sync_engine(db_file)
    try:
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            columns = {col["name"] for col in inspect(conn).get_columns("cards")}
            cards = list(conn.execute(text("SELECT last4 FROM cards")).scalars())
            return tables, columns, cards, _diff(conn)
    finally:
        engine.dispose()


async def test_services_revision_downgrades_and_upgrades_with_data(
    store_config: StoreConfig,
) -> None:
    db = await open_database(store_config)
    now = datetime.now(UTC)
    try:
        async with db.session() as s, s.begin():
            customer = Customer(name="A", id_number_hmac="h", id_number_masked="m", created_at=now)
            s.add(customer)
            await s.flush()
            s.add(Card(customer_id=customer.id, number_masked="x", last4="1234", created_at=now))
            await add_event(s, action="kept", outcome="ok", actor_kind="system")
    finally:
        await db.close()
    db_file = Path(store_config.database_url.removeprefix("sqlite+aiosqlite:///"))
    await asyncio.to_thread(_migrate_sqlite, db_file, "0002", down=True)
    tables, card_columns, cards, _ = await asyncio.to_thread(_schema, db_file)
    assert not tables & {"audit_events", "grants", "ukeys", "phone_otps", "notifications"}
    assert "blocked_at" not in card_columns and cards == ["1234"]
    db = await open_database(store_config)  # back to head
    try:
        assert (await asyncio.to_thread(_schema, db_file))[3] == []
        async with db.session() as s, s.begin():
            await add_event(s, action="after", outcome="ok", actor_kind="system")
        with pytest.raises(DBAPIError, match="append-only"):
            async with db.session() as s, s.begin():
                await s.execute(delete(AuditEvent))
    finally:
        await db.close()
