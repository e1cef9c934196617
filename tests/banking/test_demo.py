"""Demo seeding with the real shared photos."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from banking.demo import DEMO_CUSTOMERS, DEMO_PASSWORD, DEMO_PIN, DEMO_STAFF, seed_demo
from banking.identity import id_number_hmac, is_valid_id_number, luhn_valid, mask_id_number
from banking.secrets import PinContext, pin_weakness, verify_secret
from banking.sql import SqlCoreBanking
from store.blobs import LocalBlobStore
from store.db import Database
from store.models import Card, Ukey
from tests.banking.world import CHEAP_HASHER
from web.accounts import create_staff, verify_staff

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def shared_data() -> Path:
    path = Path(os.environ.get("CLOUDBRANCH_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    if not (path / "identity" / "face_recognition").is_dir():
        pytest.fail(f"shared test data not found at {path} (set CLOUDBRANCH_SHARED_DATA)")
    return path


def test_demo_data_is_valid() -> None:
    for c in DEMO_CUSTOMERS:
        assert is_valid_id_number(c.id_number), c.name
        assert luhn_valid(c.card_number), c.name
    assert len({c.card_number[-4:] for c in DEMO_CUSTOMERS}) == len(DEMO_CUSTOMERS)
    assert any(not c.name.isascii() for c in DEMO_CUSTOMERS)


async def test_seed_creates_everything_once(
    db: Database, blobs: LocalBlobStore, banking: SqlCoreBanking, shared_data: Path
) -> None:
    first = await seed_demo(
        db, blobs, banking, shared_data, create_staff=create_staff, hasher=CHEAP_HASHER
    )
    assert first.created == len(DEMO_STAFF) + len(DEMO_CUSTOMERS)
    assert first.skipped == ()
    second = await seed_demo(
        db, blobs, banking, shared_data, create_staff=create_staff, hasher=CHEAP_HASHER
    )
    assert second.created == 0
    assert {c.status for c in second.customers} == {"existing"}
    assert [c.customer_id for c in second.customers] == [c.customer_id for c in first.customers]


async def test_demo_logins_and_identification_work(
    db: Database, blobs: LocalBlobStore, banking: SqlCoreBanking, shared_data: Path
) -> None:
    summary = await seed_demo(
        db, blobs, banking, shared_data, create_staff=create_staff, hasher=CHEAP_HASHER
    )
    advisor = await verify_staff(db, "advisor1", DEMO_PASSWORD)
    assert advisor is not None
    assert (advisor.display_name, advisor.role) == ("Advisor Wang", "advisor")
    for row in summary.customers:
        ref = await banking.identify(row.name, row.id_number, row.card_last4)
        assert ref is not None and ref.id == row.customer_id
    wang = next(c for c in DEMO_CUSTOMERS if c.name == "王芳")
    photo = await banking.reference_photo(
        summary.customers[DEMO_CUSTOMERS.index(wang)].customer_id or 0
    )
    expected = (shared_data / "identity" / "face_recognition" / wang.photo_file).read_bytes()
    assert photo == (expected, "image/jpeg")


async def test_missing_photos_are_skipped_and_reported(
    db: Database, blobs: LocalBlobStore, banking: SqlCoreBanking, tmp_path: Path
) -> None:
    summary = await seed_demo(
        db, blobs, banking, tmp_path / "nowhere", create_staff=create_staff, hasher=CHEAP_HASHER
    )
    assert len(summary.skipped) == len(DEMO_CUSTOMERS)
    assert all("no photo" in c.note for c in summary.skipped)
    assert sum(s.created for s in summary.staff) == len(DEMO_STAFF)


async def test_reseed_restores_lost_blobs(
    db: Database, blobs: LocalBlobStore, banking: SqlCoreBanking, shared_data: Path
) -> None:
    summary = await seed_demo(
        db, blobs, banking, shared_data, create_staff=create_staff, hasher=CHEAP_HASHER
    )
    await asyncio.to_thread(shutil.rmtree, blobs.root)
    await seed_demo(db, blobs, banking, shared_data, create_staff=create_staff, hasher=CHEAP_HASHER)
    for row in summary.customers:
        assert await banking.reference_photo(row.customer_id or 0) is not None


def test_the_demo_pin_is_not_weak_for_any_demo_customer() -> None:
    for c in DEMO_CUSTOMERS:
        ctx = PinContext(
            c.birth_date, mask_id_number(c.id_number), id_number_hmac("p", c.id_number), "p"
        )
        assert pin_weakness(DEMO_PIN, ctx, CHEAP_HASHER) is None, c.name


async def test_demo_cards_have_the_demo_pin_and_customers_a_ukey(
    db: Database, blobs: LocalBlobStore, banking: SqlCoreBanking, shared_data: Path
) -> None:
    summary = await seed_demo(
        db, blobs, banking, shared_data, create_staff=create_staff, hasher=CHEAP_HASHER
    )
    assert summary.pin == DEMO_PIN
    async with db.session() as s:
        hashes = (await s.scalars(select(Card.pin_hash).order_by(Card.id))).all()
        ukeys = {u.serial: u.status for u in await s.scalars(select(Ukey))}
    assert len(hashes) == len(DEMO_CUSTOMERS)
    assert all(verify_secret(CHEAP_HASHER, h, DEMO_PIN) for h in hashes)
    assert ukeys == {c.ukey_serial: "locked" if c.ukey_locked else "active" for c in DEMO_CUSTOMERS}
    assert {"locked", "active"} <= set(ukeys.values())
    assert all(re.fullmatch(r"UK-\d{8}", serial) for serial in ukeys)
    assert [r.ukey_serial for r in summary.customers] == [c.ukey_serial for c in DEMO_CUSTOMERS]
    await seed_demo(db, blobs, banking, shared_data, create_staff=create_staff, hasher=CHEAP_HASHER)
    async with db.session() as s:
        assert (await s.scalars(select(Card.pin_hash).order_by(Card.id))).all() == hashes
        assert len((await s.scalars(select(Ukey))).all()) == len(DEMO_CUSTOMERS)
