"""Configuration of the store package."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class S3Config:
    """An S3-compatible blob store (MinIO in docker-compose.yml)."""

    endpoint: str
    bucket: str
    access_key: str
    secret_key: str = field(repr=False)
    region: str = "us-east-1"

    def __post_init__(self) -> None:
        parts = urlsplit(self.endpoint)
        if "@" in parts.netloc:  # the credentials have their own settings; keep them out of URLs
            raise ValueError("the S3 endpoint must not contain credentials")
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"the S3 endpoint must be an http(s) URL: {self.endpoint!r}")
        if not self.bucket or not self.access_key or not self.secret_key:
            raise ValueError("the S3 bucket, access key and secret key must all be set")


@dataclass(frozen=True, slots=True)
class AuditConfig:
    """The audit log's checkpoints: the Ed25519 key that signs them and how often.

    ``signing_seed`` is the raw 32-byte seed when one is configured; otherwise the key lives in
    ``key_file`` (generated there on first use). ``checkpoint_minutes`` = 0: no periodic ones.
    ``retention_days``: recordings and verification evidence of a case are deleted this many
    days after the case closed (``cloudbranch retention run``); 1826 days is five years.
    """

    key_file: Path
    signing_seed: bytes | None = field(default=None, repr=False)
    checkpoint_minutes: int = 10
    retention_days: int = 1826

    def __post_init__(self) -> None:
        if self.signing_seed is not None and len(self.signing_seed) != 32:
            raise ValueError("the audit signing key must be a 32-byte Ed25519 seed")
        if self.checkpoint_minutes < 0:
            raise ValueError(f"checkpoint_minutes must be 0 or more: {self.checkpoint_minutes}")
        if self.retention_days < 1:
            raise ValueError(f"retention_days must be at least 1: {self.retention_days}")


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Where the database and the blobs live.

    ``database_url`` is an SQLAlchemy async URL: ``sqlite+aiosqlite:///path`` (default) or
    ``postgresql+asyncpg://…``.
    """

    database_url: str
    blob_dir: Path
    s3: S3Config | None = None  # None: blobs live in blob_dir

    def __post_init__(self) -> None:
        if "://" not in self.database_url:
            raise ValueError(f"database_url is not a URL: {self.database_url!r}")
