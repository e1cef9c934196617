"""The async SQLAlchemy engine and sessions, and schema migrations at start-up."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from store.config import StoreConfig

log = logging.getLogger(__name__)
T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 5000
# Any constant works: it only has to be the same on every node that migrates the same database.
_PG_MIGRATION_LOCK = 0x436C6F75


def _sqlite_file(url: URL) -> Path | None:
    """Return the file of an SQLite URL, or None for other databases and in-memory SQLite."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    """Turn on foreign keys (off by default in SQLite), WAL and a busy timeout per connection."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def alembic_config() -> Config:
    """An Alembic configuration pointing at the migrations shipped inside this package."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def _upgrade_sync(connection: Connection) -> None:
    """Apply every migration up to head on ``connection`` (runs inside ``run_sync``)."""
    if connection.dialect.name == "postgresql":
        # Several nodes may start at once: let one migrate while the others wait.
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


def _make_engine(url: URL) -> AsyncEngine:
    engine = create_async_engine(url)
    if url.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _on_sqlite_connect)
    return engine


async def upgrade_to_head(url: URL) -> None:
    """Apply the Alembic migrations to head, in one transaction, on an engine of its own."""
    engine = _make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade_sync)
    finally:
        await engine.dispose()


def _upgrade_in_thread(url: URL) -> None:
    asyncio.run(upgrade_to_head(url))


class Database:
    """An async engine and its session factory.

    Use ``async with db.session() as s, s.begin(): ...`` for one transaction. Sessions do not
    expire objects on commit, so rows read in a transaction stay usable after it.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    def session(self) -> AsyncSession:
        """A new session (not yet in a transaction)."""
        return self._sessions()

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


async def open_database(cfg: StoreConfig) -> Database:
    """Open the database of ``cfg`` and migrate it to the latest schema.

    For SQLite, the file's folder is created and every connection gets foreign keys, WAL and a
    busy timeout. Running it again on an up-to-date database changes nothing.
    """
    url = make_url(cfg.database_url)
    sqlite_file = _sqlite_file(url)
    if sqlite_file is not None:
        await asyncio.to_thread(sqlite_file.parent.mkdir, parents=True, exist_ok=True)
    # Alembic reads its scripts and runs synchronously: it gets a thread (and a loop) of its
    # own so that the server's event loop is never held by a migration.
    await asyncio.to_thread(_upgrade_in_thread, url)
    engine = _make_engine(url)
    log.info("database ready (%s)", url.render_as_string(hide_password=True))
    return Database(engine)


async def integrity_problems(db: Database, limit: int = 20) -> list[str]:
    """What the database's own consistency check finds (``[]``: nothing).

    SQLite: ``PRAGMA integrity_check`` reads every page, so an overwritten page is found even
    where no query of ours would touch it; a file too damaged to be read at all is one problem.
    PostgreSQL checks its pages as it reads them (with data checksums, when the cluster has
    them): there is no whole-database check to run from here, so nothing is reported.
    """
    if db.engine.dialect.name != "sqlite":
        return []
    try:
        async with db.engine.connect() as conn:
            rows = (await conn.execute(text(f"PRAGMA integrity_check({int(limit)})"))).all()
    except DBAPIError as err:
        return [f"the database file cannot be read: {err.orig}"]
    found = [str(row[0]) for row in rows]
    return [] if found == ["ok"] else found


async def serialize(s: AsyncSession, keys: Iterable[str]) -> None:
    """Let one transaction at a time hold each of ``keys`` until it ends (check-and-record).

    PostgreSQL: transaction-scoped advisory locks, taken in a fixed order (no deadlock between
    two transactions wanting the same keys). SQLite has one writer at a time and takes its write
    lock at a transaction's first write: a caller makes its write before it counts (the other
    transaction then waits out the busy timeout instead of reading a count about to change).
    """
    if s.get_bind().dialect.name != "postgresql":
        return
    for key in sorted(set(keys)):
        await s.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": key})


def is_transient(err: BaseException) -> bool:
    """Whether a database error is worth retrying: SQLite's "database is locked" (its busy
    timeout ran out), PostgreSQL's serialization failures and deadlocks."""
    if not isinstance(err, DBAPIError):
        return False
    text_of = str(getattr(err, "orig", err)).lower()
    code = getattr(getattr(err, "orig", None), "sqlstate", None)
    return "database is locked" in text_of or code in {"40001", "40P01"}


async def retry_transient(
    op: Callable[[], Awaitable[T]], *, attempts: int = 5, first_delay: float = 0.2
) -> T:
    """``await op()``, again after a transient database error (:func:`is_transient`), with
    jittered exponential backoff; the last error is raised. For background writes (grace
    timers, the end of a call) that no request is waiting on and that must not be lost."""
    for n in range(attempts):
        try:
            return await op()
        except DBAPIError as err:
            if not is_transient(err) or n == attempts - 1:
                raise
            log.warning("database busy, retrying (%d/%d)", n + 1, attempts - 1)
            await asyncio.sleep(first_delay * 2**n * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")
