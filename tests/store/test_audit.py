"""The audit log: appended with the caller's transaction, read back, never updated or deleted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.exc import DBAPIError

from store.audit import add_event, encode_detail, list_events, looks_secret
from store.config import StoreConfig
from store.db import Database, open_database
from store.models import AuditEvent


@pytest.fixture
async def db(store_config: StoreConfig) -> AsyncIterator[Database]:
    database = await open_database(store_config)
    yield database
    await database.close()


async def _add(db: Database, case_id: int | None, action: str, **detail: object) -> None:
    async with db.session() as s, s.begin():
        await add_event(
            s,
            action=action,
            outcome="ok",
            actor_kind="staff",
            actor_id=7,
            case_id=case_id,
            detail=detail,
        )


async def test_events_are_read_back_newest_first(db: Database) -> None:
    await _add(db, 1, "first", b=2, a=1)
    await _add(db, 2, "other case")
    await _add(db, 1, "second", when=datetime(2026, 1, 2, tzinfo=UTC))
    events = await list_events(db, case_id=1)
    assert [e.action for e in events] == ["second", "first"]
    assert events[1].detail == {"a": 1, "b": 2}
    assert events[0].detail == {"when": "2026-01-02T00:00:00+00:00"}
    assert (events[1].actor_kind, events[1].actor_id, events[1].outcome) == ("staff", 7, "ok")
    assert events[0].at.tzinfo is not None
    assert [e.action for e in await list_events(db, limit=2)] == ["second", "other case"]
    async with db.engine.connect() as conn:
        raw = (await conn.execute(text("SELECT detail FROM audit_events ORDER BY id"))).scalar()
    assert raw == '{"a": 1, "b": 2}'  # sorted keys


async def test_an_event_rolls_back_with_its_transaction(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.session() as s, s.begin():
            await add_event(s, action="x", outcome="ok", actor_kind="system")
            raise RuntimeError("the operation failed")
    assert await list_events(db) == []


@pytest.mark.parametrize(
    "key",
    [
        "pin",
        "new_pin",
        "PIN",
        "password",
        "newPassword",
        "otp",
        "otpCode",
        "code",
        "id_number",
        "idNumber",
        "userpassword",
        "pin-code",
    ],
)
def test_secret_looking_keys_are_refused(key: str) -> None:
    assert looks_secret(key)
    with pytest.raises(ValueError, match="looks like a secret"):
        encode_detail({key: "x"})
    with pytest.raises(ValueError):
        encode_detail({"outer": [{key: "x"}]})


@pytest.mark.parametrize("key", ["refusal", "serial", "card", "new_phone", "reason", "spinner"])
def test_ordinary_keys_pass(key: str) -> None:
    assert not looks_secret(key)
    assert encode_detail({key: 1}) == f'{{"{key}": 1}}'


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValueError):
        encode_detail({"x": object()})


async def test_bad_actor_or_outcome_refused(db: Database) -> None:
    async with db.session() as s:
        with pytest.raises(ValueError):
            await add_event(s, action="x", outcome="maybe", actor_kind="system")
        with pytest.raises(ValueError):
            await add_event(s, action="x", outcome="ok", actor_kind="robot")
    with pytest.raises(ValueError):
        await list_events(db, limit=0)


async def assert_append_only(db: Database) -> None:
    """UPDATE and DELETE of audit events fail in the database itself, and the rows stay."""
    await _add(db, 1, "kept")
    for statement in (update(AuditEvent).values(outcome="refused"), delete(AuditEvent)):
        with pytest.raises(DBAPIError, match="append-only"):
            async with db.session() as s, s.begin():
                await s.execute(statement)
    (event,) = await list_events(db)
    assert (event.action, event.outcome) == ("kept", "ok")


async def test_the_trigger_keeps_the_log_append_only(db: Database) -> None:
    await assert_append_only(db)
