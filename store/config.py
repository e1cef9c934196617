"""Configuration of the store package."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Where the database and the blobs live.

    ``database_url`` is an SQLAlchemy async URL: ``sqlite+aiosqlite:///path`` (default) or
    ``postgresql+asyncpg://…``.
    """

    database_url: str
    blob_dir: Path

    def __post_init__(self) -> None:
        if "://" not in self.database_url:
            raise ValueError(f"database_url is not a URL: {self.database_url!r}")
