"""Pure identity helpers: PRC ID numbers, names, HMAC, masking, Luhn."""

from __future__ import annotations

from datetime import date

import pytest

from banking.errors import InvalidCustomerData
from banking.identity import (
    check_card_number,
    check_id_number,
    id_number_birth_date,
    id_number_hmac,
    is_valid_id_number,
    luhn_check_digit,
    luhn_valid,
    mask_card_number,
    mask_id_number,
    names_match,
    normalise_name,
    prc_id_check_char,
)

VALID_ID = "110101199003074514"


def test_known_valid_id_number() -> None:
    assert prc_id_check_char(VALID_ID[:17]) == "4"
    assert check_id_number(VALID_ID) == VALID_ID
    assert id_number_birth_date(VALID_ID) == date(1990, 3, 7)


def test_x_check_character_is_accepted_in_either_case() -> None:
    candidates = (f"11010119900307{n:03d}" for n in range(1000))
    first17 = next(c for c in candidates if prc_id_check_char(c) == "X")
    assert check_id_number(first17 + "x") == first17 + "X"


def test_spaces_are_ignored() -> None:
    assert check_id_number(" 110101 19900307 4514 ") == VALID_ID


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("110101199003074515", "check digit"),
        ("11010119900307451", "17 digits"),
        ("1101011990030745144", "17 digits"),
        ("11010119900307451A", "17 digits"),
        ("110101199013074514", "birth date"),
        ("110101299003074514", "birth date"),
    ],
)
def test_invalid_id_numbers(raw: str, reason: str) -> None:
    with pytest.raises(InvalidCustomerData) as info:
        check_id_number(raw)
    assert info.value.field == "id_number"
    assert reason in str(info.value)
    assert raw not in str(info.value)
    assert not is_valid_id_number(raw)


def test_mask_id_number() -> None:
    assert mask_id_number("110101199003074514") == "1101**********4514"


def test_hmac_is_keyed_and_normalised() -> None:
    a = id_number_hmac("pepper", "11010119900307451x")
    assert a == id_number_hmac("pepper", "11010119900307451X ")
    assert a != id_number_hmac("other", "11010119900307451X")
    assert len(a) == 64
    with pytest.raises(ValueError):
        id_number_hmac("", VALID_ID)


def test_names() -> None:
    assert normalise_name("  Barack   OBAMA ") == "barack obama"
    assert names_match("王芳", "　王芳 ")  # full-width space from a Chinese IME
    assert not names_match("王芳", "王方")


def test_luhn() -> None:
    assert luhn_valid("4539578763621486")
    assert not luhn_valid("4539578763621487")
    assert luhn_check_digit("453957876362148") == "6"
    assert check_card_number("4539 5787 6362 1486") == "4539578763621486"


@pytest.mark.parametrize("raw", ["4539578763621487", "1234", "4539-5787-6362-148a", ""])
def test_invalid_card_numbers(raw: str) -> None:
    with pytest.raises(InvalidCustomerData) as info:
        check_card_number(raw)
    assert info.value.field == "card_number"


def test_mask_card_number() -> None:
    assert mask_card_number("6222021234561234") == "6222 **** **** 1234"
