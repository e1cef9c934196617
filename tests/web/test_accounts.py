"""Staff accounts against a real SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, update

from store.config import StoreConfig
from store.db import Database, open_database
from store.models import Staff
from web.accounts import (
    _DUMMY_HASH,
    ROLES,
    AccountError,
    DuplicateUsername,
    InvalidUsername,
    StaffRef,
    UnknownRole,
    WeakPassword,
    create_staff,
    get_staff,
    verify_staff,
)

PASSWORD = "correct horse battery"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    cfg = StoreConfig(f"sqlite+aiosqlite:///{tmp_path / 'web.db'}", tmp_path / "blobs")
    database = await open_database(cfg)
    yield database
    await database.close()


async def test_create_and_verify(db: Database) -> None:
    ref = await create_staff(db, "Advisor1", "Advisor Wang", PASSWORD, "advisor")
    assert ref == StaffRef(ref.id, "advisor1", "Advisor Wang", "advisor")
    assert await verify_staff(db, "advisor1", PASSWORD) == ref
    assert await verify_staff(db, " ADVISOR1 ", PASSWORD) == ref
    assert await get_staff(db, ref.id) == ref


async def test_password_is_stored_as_argon2id(db: Database) -> None:
    await create_staff(db, "admin", "Admin", PASSWORD, "admin")
    async with db.session() as s, s.begin():
        stored = (await s.execute(select(Staff.password_hash))).scalar_one()
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored


async def test_wrong_password_and_unknown_user(db: Database) -> None:
    await create_staff(db, "auditor1", "Auditor", PASSWORD, "auditor")
    assert await verify_staff(db, "auditor1", PASSWORD + "!") is None
    assert await verify_staff(db, "nobody", PASSWORD) is None
    assert await verify_staff(db, "auditor1", "x" * 5000) is None


async def test_inactive_staff_cannot_log_in(db: Database) -> None:
    ref = await create_staff(db, "supervisor1", "Supervisor", PASSWORD, "supervisor")
    async with db.session() as s, s.begin():
        await s.execute(update(Staff).values(active=False))
    assert await verify_staff(db, "supervisor1", PASSWORD) is None
    assert await get_staff(db, ref.id) is None


@pytest.mark.parametrize(
    ("username", "password", "role", "error"),
    [
        ("advisor9", "short", "advisor", WeakPassword),
        ("advisor9", "123456789", "advisor", WeakPassword),
        ("advisor9", PASSWORD, "teller", UnknownRole),
        ("a", PASSWORD, "advisor", InvalidUsername),
        ("bad name", PASSWORD, "advisor", InvalidUsername),
    ],
)
async def test_refused_accounts(
    db: Database, username: str, password: str, role: str, error: type[AccountError]
) -> None:
    with pytest.raises(error) as info:
        await create_staff(db, username, "Someone", password, role)
    assert isinstance(info.value, ValueError)
    assert password not in str(info.value)


async def test_duplicate_username(db: Database) -> None:
    await create_staff(db, "advisor2", "Advisor Li", PASSWORD, "advisor")
    with pytest.raises(DuplicateUsername):
        await create_staff(db, "ADVISOR2", "Another", PASSWORD, "advisor")


async def test_get_unknown_staff(db: Database) -> None:
    assert await get_staff(db, 123) is None


def test_roles() -> None:
    assert ROLES == ("advisor", "supervisor", "auditor", "admin")


def test_dummy_hash_costs_as_much_as_a_real_one() -> None:
    assert not PasswordHasher().check_needs_rehash(_DUMMY_HASH)


async def test_outdated_hash_is_upgraded_on_login(db: Database) -> None:
    ref = await create_staff(db, "advisor3", "Advisor", PASSWORD, "advisor")
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    async with db.session() as s, s.begin():
        await s.execute(update(Staff).values(password_hash=weak))
    assert await verify_staff(db, "advisor3", PASSWORD) == ref
    async with db.session() as s, s.begin():
        stored = (await s.execute(select(Staff.password_hash))).scalar_one()
    assert not PasswordHasher().check_needs_rehash(stored)
