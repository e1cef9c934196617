"""Fixtures for store tests: a fresh SQLite file per test, or each kind of database."""

from __future__ import annotations

from pathlib import Path

import pytest

from store.config import StoreConfig


@pytest.fixture
def store_config(tmp_path: Path) -> StoreConfig:
    """A store configuration whose database and blobs live in a nested, not yet existing folder."""
    data = tmp_path / "data" / "nested"
    return StoreConfig(
        database_url=f"sqlite+aiosqlite:///{data / 'cloudbranch.db'}",
        blob_dir=data / "blobs",
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(
    request: pytest.FixtureRequest, store_config: StoreConfig, tmp_path: Path
) -> StoreConfig:
    """Each kind of database in turn: the SQLite file, then the tests' PostgreSQL server.

    PostgreSQL's schema is shared by the tests (``tests.store.test_postgres.reset_schema``
    empties it). The server starts here, outside the event loop.
    """
    if request.param == "postgresql":
        return StoreConfig(request.getfixturevalue("pg_url"), tmp_path / "blobs")
    return store_config
