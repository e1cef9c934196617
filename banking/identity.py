"""Pure helpers for identity data: PRC resident ID numbers, names, bank card numbers.

Only the 18-character PRC resident identity card number (GB 11643-1999) is supported: no
15-character legacy numbers, passports, or foreigners' permanent-residence cards.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from datetime import date

from banking.errors import InvalidCustomerData

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK_CHARS = "10X98765432"
_ID_RE = re.compile(r"\d{17}[\dX]")
_CARD_RE = re.compile(r"\d{12,19}")
_SEPARATORS = re.compile(r"[\s-]+")


def prc_id_check_char(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character ("0"–"9" or "X") for the first 17 digits."""
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise ValueError("expected 17 digits")
    total = sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK_CHARS[total % 11]


def normalise_id_number(raw: str) -> str:
    """Strip spaces and upper-case a trailing ``x``: the form that is hashed and compared."""
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", raw)).upper()


def id_number_birth_date(id_number: str) -> date | None:
    """The birth date encoded in characters 7–14, or None if it is not a real date."""
    digits = normalise_id_number(id_number)[6:14]
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return None


def check_id_number(raw: str, today: date | None = None) -> str:
    """Return the normalised PRC resident ID number or raise ``InvalidCustomerData``.

    Checks the length and characters, the birth date (a real date, not in the future, not before
    1900) and the MOD 11-2 check character.
    """
    number = normalise_id_number(raw)
    if not _ID_RE.fullmatch(number):
        raise InvalidCustomerData("id_number", "must be 17 digits followed by a digit or X")
    birth = id_number_birth_date(number)
    if birth is None or not date(1900, 1, 1) <= birth <= (today or date.today()):
        raise InvalidCustomerData("id_number", "does not contain a valid birth date")
    if prc_id_check_char(number[:17]) != number[17]:
        raise InvalidCustomerData("id_number", "check digit does not match")
    return number


def is_valid_id_number(raw: str) -> bool:
    """Tell whether ``raw`` is a valid PRC resident ID number."""
    try:
        check_id_number(raw)
    except InvalidCustomerData:
        return False
    return True


def id_number_hmac(pepper: str, id_number: str) -> str:
    """HMAC-SHA256 (hex) of the normalised ID number under the server's secret ``pepper``."""
    if not pepper:
        raise ValueError("the pepper must not be empty")
    message = normalise_id_number(id_number).encode()
    return hmac.new(pepper.encode(), message, hashlib.sha256).hexdigest()


def mask_id_number(id_number: str) -> str:
    """Keep the first and last four characters: ``1101**********4514``."""
    number = normalise_id_number(id_number)
    if len(number) <= 8:
        return "*" * len(number)
    return number[:4] + "*" * (len(number) - 8) + number[-4:]


def clean_name(raw: str) -> str:
    """The name as displayed: NFKC (full-width to half-width), trimmed, inner spaces collapsed."""
    return " ".join(unicodedata.normalize("NFKC", raw).split())


def normalise_name(raw: str) -> str:
    """The name as compared: ``clean_name`` then case-folded."""
    return clean_name(raw).casefold()


def names_match(a: str, b: str) -> bool:
    """Compare two names after normalisation, in constant time."""
    return hmac.compare_digest(normalise_name(a).encode(), normalise_name(b).encode())


def luhn_check_digit(partial: str) -> str:
    """The Luhn check digit to append to ``partial`` (digits only)."""
    if not partial.isascii() or not partial.isdigit():
        raise ValueError("expected digits")
    total = 0
    for i, ch in enumerate(reversed(partial)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str(-total % 10)


def luhn_valid(number: str) -> bool:
    """Tell whether a digit string passes the Luhn check."""
    if len(number) < 2 or not number.isascii() or not number.isdigit():
        return False
    return luhn_check_digit(number[:-1]) == number[-1]


def check_card_number(raw: str) -> str:
    """Return the card number without spaces or dashes, or raise ``InvalidCustomerData``."""
    number = _SEPARATORS.sub("", raw)
    if not number.isascii() or not _CARD_RE.fullmatch(number):
        raise InvalidCustomerData("card_number", "must be 12 to 19 digits")
    if not luhn_valid(number):
        raise InvalidCustomerData("card_number", "check digit does not match")
    return number


def mask_card_number(number: str) -> str:
    """First and last four digits only, length hidden: ``6222 **** **** 1234``."""
    digits = _SEPARATORS.sub("", number)
    return f"{digits[:4]} **** **** {digits[-4:]}"
