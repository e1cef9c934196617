"""The same migrations on PostgreSQL, when a throwaway server is configured.

Set ``CLOUDBRANCH_TEST_POSTGRES_URL=postgresql+asyncpg://user@host:port/db`` to run it: the test
drops and recreates the ``public`` schema of that database.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

from store.config import StoreConfig
from store.db import open_database
from store.models import Base

URL = os.environ.get("CLOUDBRANCH_TEST_POSTGRES_URL", "")
pytestmark = pytest.mark.skipif(not URL, reason="CLOUDBRANCH_TEST_POSTGRES_URL is not set")


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def _reset_schema() -> None:
    engine = create_async_engine(URL)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


async def test_concurrent_opens_migrate_once_and_match_models(tmp_path: Path) -> None:
    await _reset_schema()
    cfg = StoreConfig(URL, tmp_path / "blobs")
    dbs = await asyncio.gather(*(open_database(cfg) for _ in range(3)))
    try:
        async with dbs[0].engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        for db in dbs:
            await db.close()
