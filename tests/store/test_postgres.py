"""The same migrations on PostgreSQL: a throwaway server started by the tests.

``CLOUDBRANCH_TEST_POSTGRES_URL=postgresql+asyncpg://user@host:port/db`` points them at another
server instead: the tests drop and recreate the ``public`` schema of that database.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from store.audit import list_events
from store.config import StoreConfig
from store.db import alembic_config, open_database
from store.models import Base
from tests.store.test_audit import assert_append_only


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def reset_schema(url: str) -> None:
    """Empty the database (the tests share one server)."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


async def test_concurrent_opens_migrate_once_and_match_models(pg_url: str, tmp_path: Path) -> None:
    await reset_schema(pg_url)
    cfg = StoreConfig(pg_url, tmp_path / "blobs")
    dbs = await asyncio.gather(*(open_database(cfg) for _ in range(3)))
    try:
        async with dbs[0].engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        for db in dbs:
            await db.close()


async def test_audit_events_are_append_only(pg_url: str, tmp_path: Path) -> None:
    await reset_schema(pg_url)
    db = await open_database(StoreConfig(pg_url, tmp_path / "blobs"))
    try:
        await assert_append_only(db)
        with pytest.raises(DBAPIError, match="append-only"):
            async with db.engine.begin() as conn:
                await conn.execute(text("TRUNCATE audit_events"))
        assert len(await list_events(db)) == 1
    finally:
        await db.close()


async def _downgrade(url: str, revision: str) -> None:
    engine = create_async_engine(url)

    def run(connection: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, revision)

    try:
        async with engine.begin() as conn:
            await conn.run_sync(run)
    finally:
        await engine.dispose()


async def test_services_revision_downgrades_and_upgrades(pg_url: str, tmp_path: Path) -> None:
    await reset_schema(pg_url)
    cfg = StoreConfig(pg_url, tmp_path / "blobs")
    await (await open_database(cfg)).close()
    # Alembic reads its scripts synchronously: a thread (and loop) of its own, as in store.db.
    await asyncio.to_thread(asyncio.run, _downgrade(pg_url, "0002"))
    db = await open_database(cfg)
    try:
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
        await assert_append_only(db)
    finally:
        await db.close()
