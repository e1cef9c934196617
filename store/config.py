"""Configuration of the store package."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class S3Config:
    """An S3-compatible blob store (MinIO in docker-compose.yml)."""

    endpoint: str
    bucket: str
    access_key: str
    secret_key: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Where the database and the blobs live.

    ``database_url`` is an SQLAlchemy async URL: ``sqlite+aiosqlite:///path`` (default) or
    ``postgresql+asyncpg://…``.
    """

    database_url: str
    blob_dir: Path
    s3: S3Config | None = None  # not built yet (the server refuses it)

    def __post_init__(self) -> None:
        if "://" not in self.database_url:
            raise ValueError(f"database_url is not a URL: {self.database_url!r}")
