"""Fixtures for store tests: a fresh SQLite file per test."""

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
