"""The migrations build exactly the schema of ``store.models``."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from store.config import StoreConfig
from store.db import alembic_config, open_database
from store.models import Base, Card


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
