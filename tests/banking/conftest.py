"""Fixtures for banking tests: a real SQLite file and blob folder per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from banking.sql import SqlCoreBanking
from store.blobs import LocalBlobStore
from store.config import StoreConfig
from store.db import Database, open_database
from tests.banking.world import CHEAP_HASHER, World, build_world

PEPPER = "test-pepper-not-secret"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    cfg = StoreConfig(f"sqlite+aiosqlite:///{tmp_path / 'bank.db'}", tmp_path / "blobs")
    database = await open_database(cfg)
    yield database
    await database.close()


@pytest.fixture
def blobs(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


@pytest.fixture
def banking(db: Database, blobs: LocalBlobStore) -> SqlCoreBanking:
    return SqlCoreBanking(db, blobs, PEPPER, hasher=CHEAP_HASHER)


@pytest.fixture
async def world(db: Database, banking: SqlCoreBanking) -> World:
    """Alice, Bob, their cases, a staff member and a passed attempt (see tests/banking/world)."""
    return await build_world(db, banking)
