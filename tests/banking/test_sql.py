"""SqlCoreBanking against a real SQLite file."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from sqlalchemy import select

from banking.core import CoreBanking, NewCustomer, StoredTemplate
from banking.errors import CustomerNotFound, DuplicateCustomer, InvalidCustomerData
from banking.identity import luhn_check_digit, prc_id_check_char
from banking.sql import SqlCoreBanking
from store.blobs import LocalBlobStore
from store.db import Database
from store.models import Card, Customer, ReferenceTemplate
from tests.banking.images import image_bytes

CARD = "622202123456789" + luhn_check_digit("622202123456789")


def id_number(seq: int, birth: str = "19850612") -> str:
    first17 = f"310104{birth}{seq:03d}"
    return first17 + prc_id_check_char(first17)


def new_customer(**overrides: object) -> NewCustomer:
    fields: dict[str, object] = {
        "name": "Li Lei",
        "id_number": id_number(1),
        "card_number": CARD,
        "photo": image_bytes(),
        "photo_content_type": "image/jpeg",
        "birth_date": "1985-06-12",
        "phone": "138 0013 8000",
    }
    fields.update(overrides)
    return NewCustomer(**fields)  # type: ignore[arg-type]


def test_satisfies_protocol(banking: SqlCoreBanking) -> None:
    core: CoreBanking = banking
    assert core is banking


async def test_add_then_identify(banking: SqlCoreBanking) -> None:
    ref = await banking.add_customer(new_customer())
    assert ref.name == "Li Lei"
    assert ref.id_number_masked == id_number(1)[:4] + "*" * 10 + id_number(1)[-4:]
    found = await banking.identify("  li   LEI ", id_number(1), CARD[-4:])
    assert found == ref
    assert await banking.get_customer(ref.id) == ref


@pytest.mark.parametrize(
    ("name", "idn", "last4"),
    [
        ("Han Meimei", id_number(1), CARD[-4:]),  # wrong name
        ("Li Lei", id_number(2), CARD[-4:]),  # unknown ID number
        ("Li Lei", id_number(1), "0000"),  # no card ending so
        ("Li Lei", "not an id", CARD[-4:]),  # malformed ID number
        ("Li Lei", id_number(1), ""),  # empty last 4
    ],
)
async def test_identify_returns_none_for_each_wrong_field(
    banking: SqlCoreBanking, name: str, idn: str, last4: str
) -> None:
    await banking.add_customer(new_customer())
    assert await banking.identify(name, idn, last4) is None


async def test_duplicate_id_number_refused(banking: SqlCoreBanking, db: Database) -> None:
    await banking.add_customer(new_customer())
    with pytest.raises(DuplicateCustomer):
        await banking.add_customer(new_customer(name="Someone Else"))
    async with db.session() as s, s.begin():
        assert len((await s.execute(select(Customer))).all()) == 1
        assert len((await s.execute(select(Card))).all()) == 1


async def test_concurrent_duplicates_leave_one_customer(banking: SqlCoreBanking) -> None:
    results = await asyncio.gather(
        banking.add_customer(new_customer()),
        banking.add_customer(new_customer()),
        return_exceptions=True,
    )
    assert sum(isinstance(r, DuplicateCustomer) for r in results) == 1


async def test_id_number_stored_only_hashed_and_masked(
    banking: SqlCoreBanking, db: Database
) -> None:
    await banking.add_customer(new_customer())
    async with db.session() as s, s.begin():
        customer = (await s.execute(select(Customer))).scalar_one()
        card = (await s.execute(select(Card))).scalar_one()
    assert id_number(1) not in repr(vars(customer))
    assert customer.birth_date == "1985-06-12"
    assert customer.phone == "13800138000"
    assert card.number_masked == f"6222 **** **** {CARD[-4:]}"
    assert CARD not in repr(vars(card))


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"id_number": "310104198506120010"}, "id_number"),
        ({"card_number": "6222021234567890"}, "card_number"),
        ({"name": "   "}, "name"),
        ({"photo": b""}, "photo"),
        ({"photo_content_type": "image/gif"}, "photo_content_type"),
        ({"birth_date": "1985-06-13"}, "birth_date"),
        ({"birth_date": "12/06/1985"}, "birth_date"),
        ({"phone": "call me"}, "phone"),
    ],
)
def test_new_customer_refuses_bad_fields(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidCustomerData) as info:
        new_customer(**overrides)
    assert info.value.field == field
    assert field in str(info.value)


def test_new_customer_repr_hides_secrets() -> None:
    text = repr(new_customer())
    assert id_number(1) not in text
    assert CARD not in text


def test_birth_date_defaults_to_the_id_numbers() -> None:
    assert new_customer(birth_date=None).birth_date == "1985-06-12"


async def test_unreadable_photo_refused(banking: SqlCoreBanking, blobs: LocalBlobStore) -> None:
    jpeg = image_bytes()
    with pytest.raises(InvalidCustomerData) as info:
        await banking.add_customer(new_customer(photo=jpeg[: len(jpeg) // 3]))
    assert info.value.field == "photo"
    with pytest.raises(InvalidCustomerData) as info:
        await banking.add_customer(new_customer(photo=b"GIF89a not really"))
    assert info.value.field == "photo"
    assert not blobs.root.exists() or not any(blobs.root.rglob("*"))


async def test_photo_type_must_match_content(banking: SqlCoreBanking) -> None:
    with pytest.raises(InvalidCustomerData) as info:
        await banking.add_customer(new_customer(photo=image_bytes("PNG")))
    assert info.value.field == "photo_content_type"


async def test_reference_photo_round_trip(banking: SqlCoreBanking) -> None:
    png = image_bytes("PNG")
    ref = await banking.add_customer(new_customer(photo=png, photo_content_type="image/png"))
    assert await banking.reference_photo(ref.id) == (png, "image/png")
    assert await banking.reference_photo(ref.id + 1) is None


async def test_unknown_customer(banking: SqlCoreBanking) -> None:
    with pytest.raises(CustomerNotFound):
        await banking.get_customer(42)


def test_frozen() -> None:
    customer = new_customer()
    with pytest.raises(dataclasses.FrozenInstanceError):
        customer.name = "x"  # type: ignore[misc]


async def test_templates_are_stored_with_the_customer_and_replaced_per_model(
    banking: SqlCoreBanking,
) -> None:
    first = StoredTemplate("dlib/resnet@20", b"vector-1", b"\xff\xd8crop")
    ref = await banking.add_customer(new_customer(), [first])
    assert await banking.reference_template(ref.id, "dlib/resnet@20") == first
    assert await banking.reference_template(ref.id, "onnx/other@1") is None
    second = StoredTemplate("dlib/resnet@20", b"vector-2")
    await banking.save_template(ref.id, second)
    assert await banking.reference_template(ref.id, "dlib/resnet@20") == second
    with pytest.raises(CustomerNotFound):
        await banking.save_template(ref.id + 99, second)


async def test_a_failed_add_stores_no_template(banking: SqlCoreBanking, db: Database) -> None:
    await banking.add_customer(new_customer())
    with pytest.raises(DuplicateCustomer):
        await banking.add_customer(new_customer(), [StoredTemplate("k", b"v")])
    async with db.session() as s:
        assert (await s.scalars(select(ReferenceTemplate))).all() == []
