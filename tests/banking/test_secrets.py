"""The pure secret policy: PINs, U-key passwords, phone numbers, codes, card numbers."""

from __future__ import annotations

import pytest

from banking.errors import Mismatch, PasswordWeak, PhoneInvalid, PinFormat
from banking.identity import id_number_hmac, luhn_valid, mask_id_number
from banking.secrets import (
    PinContext,
    birth_date_forms,
    check_password_entry,
    check_pin_entry,
    hash_secret,
    in_id_number,
    is_sequence,
    mask_phone,
    new_card_number,
    new_hasher,
    new_otp,
    normalise_phone,
    pin_weakness,
    reuses_pin,
    same_phone,
    verify_secret,
)
from tests.banking.world import CHEAP_HASHER, id_number

PEPPER = "pepper"
ID = id_number(7)  # 310104 19850612 007 + check


def context(pin_hash: str | None = None, birth: str | None = "1985-06-12") -> PinContext:
    return PinContext(birth, mask_id_number(ID), id_number_hmac(PEPPER, ID), PEPPER, pin_hash)


@pytest.mark.parametrize(
    ("pin", "reason"),
    [
        ("000000", "same_digits"),
        ("777777", "same_digits"),
        ("123456", "sequence"),
        ("456789", "sequence"),
        ("012345", "sequence"),
        ("654321", "sequence"),
        ("890123", "sequence"),  # around the dial
        ("109876", "sequence"),
        ("850612", "birth_date"),  # YYMMDD
        ("061285", "birth_date"),  # MMDDYY
        ("120685", "birth_date"),  # DDMMYY
        ("310104", "id_number"),  # digits 1-6: 5 and 6 recovered through the HMAC
        ("041985", "id_number"),  # digits 5-10
        ("419850", "id_number"),  # digits 6-11: digit 5 tried against the HMAC
        ("198506", "id_number"),  # digits 7-12: all known
        ("120078", "id_number"),  # digits 13-18, from the masked form's last four
    ],
)
def test_weak_pins(pin: str, reason: str) -> None:
    assert pin_weakness(pin, context(), CHEAP_HASHER) == reason


def test_last_pin_is_weak_and_found_through_the_hash() -> None:
    old = hash_secret(CHEAP_HASHER, "802613")
    assert pin_weakness("802613", context(old), CHEAP_HASHER) == "last_pin"
    assert pin_weakness("802614", context(old), CHEAP_HASHER) is None


@pytest.mark.parametrize("pin", ["802613", "135790", "246813", "112358", "010410"])
def test_ordinary_pins_pass(pin: str) -> None:
    assert pin_weakness(pin, context(), CHEAP_HASHER) is None


def test_id_windows_need_the_right_number() -> None:
    # "0104" then two digits that are NOT the ID's digits 5-6 ("04"): not a window of this ID.
    assert in_id_number("010419", context())
    assert not in_id_number("010499", context())
    other = PinContext(
        "1985-06-12", mask_id_number(ID), id_number_hmac(PEPPER, id_number(8)), PEPPER
    )
    assert not in_id_number("310104", other)  # same masked form, different hidden digits


def test_birth_date_forms() -> None:
    assert birth_date_forms("1985-06-12") == {"850612", "061285", "120685"}
    assert birth_date_forms(None) == set()
    assert birth_date_forms("garbage") == set()


def test_sequence_needs_every_step() -> None:
    assert not is_sequence("123457")
    assert not is_sequence("121212")


@pytest.mark.parametrize("pin", ["12345", "1234567", "12a456", "１２３４５６", "", " 12345"])
def test_pin_format(pin: str) -> None:
    with pytest.raises(PinFormat) as info:
        check_pin_entry(pin, pin)
    assert info.value.code == "pin_format" and info.value.field == "pin"


def test_pin_mismatch() -> None:
    with pytest.raises(Mismatch) as info:
        check_pin_entry("802613", "802631")
    assert info.value.code == "mismatch"
    check_pin_entry("802613", "802613")


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("Ab1!", "length"),
        ("Ab1!" * 8 + "x", "length"),  # 33
        ("abcdefgh1", "classes"),
        ("ABCDEFGH", "classes"),
        ("abc!defg", "classes"),
        ("Abc1!\ndef", "charset"),
    ],
)
def test_weak_passwords(password: str, reason: str) -> None:
    with pytest.raises(PasswordWeak) as info:
        check_password_entry(password, password)
    assert info.value.reason == reason
    assert password not in str(info.value)


@pytest.mark.parametrize(
    "password", ["Abcdefg1", "abcdef1!", "ABC-def-9", "Ab1!" * 8, "密码Ab12xy"]
)
def test_good_passwords(password: str) -> None:
    check_password_entry(password, password)


def test_password_mismatch() -> None:
    with pytest.raises(Mismatch):
        check_password_entry("Abcdefg1", "Abcdefg2")


def test_password_reusing_the_pin() -> None:
    pin_hash = hash_secret(CHEAP_HASHER, "802613")
    assert reuses_pin("802613", [pin_hash], CHEAP_HASHER)
    assert reuses_pin("Xy!802613z", [None, pin_hash], CHEAP_HASHER)
    assert not reuses_pin("Xy!802614z", [pin_hash], CHEAP_HASHER)
    assert not reuses_pin("Xy!802613z", [None], CHEAP_HASHER)


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("13800138000", "13800138000"),
        ("138 0013 8000", "13800138000"),
        ("+86 138-0013-8000", "13800138000"),
        ("+44 7911 123456", "+447911123456"),
        ("(+1) 415.555.0100", "+14155550100"),
    ],
)
def test_phone_normalisation(raw: str, normalised: str) -> None:
    assert normalise_phone(raw) == normalised


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "12345",
        "23800138000",
        "1380013800",
        "138001380001",
        "+12345",
        "+1234567890123456",
        "+86 10 1234 5678",
        "call me",
        "１３８００１３８０００x",
    ],
)
def test_invalid_phones(raw: str) -> None:
    with pytest.raises(PhoneInvalid) as info:
        normalise_phone(raw)
    assert info.value.code == "phone_invalid" and info.value.field == "new_phone"


def test_same_phone_compares_normalised_forms() -> None:
    assert same_phone("138 0013 8000", "13800138000")
    assert same_phone("+8613800138000", "13800138000")
    assert not same_phone(None, "13800138000")
    assert not same_phone("13800138001", "13800138000")


def test_mask_phone() -> None:
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("+447911123456") == "+44******3456"
    assert mask_phone("123456") == "****56"


def test_otps_are_six_random_digits() -> None:
    codes = {new_otp() for _ in range(200)}
    assert all(len(c) == 6 and c.isdigit() for c in codes)
    assert len(codes) > 190


def test_new_card_numbers() -> None:
    numbers = {new_card_number("6222") for _ in range(50)}
    assert len(numbers) == 50
    assert all(len(n) == 16 and n.startswith("6222") and luhn_valid(n) for n in numbers)
    with pytest.raises(ValueError):
        new_card_number("62x2")


def test_verify_secret_refuses_garbage_hashes() -> None:
    assert not verify_secret(CHEAP_HASHER, None, "x")
    assert not verify_secret(CHEAP_HASHER, "not-a-hash", "x")
    assert verify_secret(CHEAP_HASHER, hash_secret(CHEAP_HASHER, "x"), "x")


def test_default_hasher_is_argon2id_at_full_cost() -> None:
    params = new_hasher()
    assert (params.time_cost, params.memory_cost, params.parallelism) == (3, 65536, 4)
    assert params.type.name == "ID"
