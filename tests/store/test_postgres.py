"""The same migrations on PostgreSQL: a throwaway server started by the tests.

``CLOUDBRANCH_TEST_POSTGRES_URL=postgresql+asyncpg://user@host:port/db`` points them at another
server instead: the tests drop and recreate the ``public`` schema of that database.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

from store.config import StoreConfig
from store.db import open_database
from store.models import Base


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
