"""Secret policy and hashing: PINs, U-key passwords, one-time codes, phone numbers.

Pure functions, no I/O. argon2 hashing and verification are CPU work (tens to hundreds of
milliseconds): async code calls them through ``asyncio.to_thread``, never on the event loop.

Weak PINs (``PinWeak.reason``):

* ``same_digits`` — one digit six times (``000000``);
* ``sequence`` — each digit one more, or each one less, than the one before, counting around
  the dial: ``123456``, ``654321`` and also ``890123`` or ``109876`` (as guessable as the others);
* ``birth_date`` — the birth date as YYMMDD, MMDDYY or DDMMYY;
* ``id_number`` — any six consecutive digits of the ID number. Only its HMAC, its masked form
  (first and last four characters) and the birth date (characters 7–14) are stored, so the two
  unknown digits (5 and 6) are recovered by trying the candidates against the HMAC;
* ``last_pin`` — the PIN the card has now.

U-key passwords (``PasswordWeak.reason``): ``length`` (8–32 characters), ``charset`` (control
characters), ``classes`` (at least three of lower case, upper case, digit, symbol — any other
character counts as a symbol), ``equals_pin`` (the password is, or contains, six digits that are
the PIN of one of the customer's usable cards; found by argon2-verifying each six-digit run).
"""

from __future__ import annotations

import hmac
import re
import secrets
import string
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise, product

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from banking.errors import Mismatch, PasswordWeak, PhoneInvalid, PinFormat
from banking.identity import id_number_hmac, luhn_check_digit

PIN_LENGTH = 6
OTP_LENGTH = 6
PASSWORD_MIN, PASSWORD_MAX = 8, 32
PASSWORD_MIN_CLASSES = 3
CARD_LENGTH = 16
_MAINLAND_MOBILE = re.compile(r"1[3-9]\d{9}")
_INTERNATIONAL = re.compile(r"\+\d{6,15}")
_PHONE_SEPARATORS = re.compile(r"[\s().-]+")
_ID_LENGTH = 18


def new_hasher() -> PasswordHasher:
    """argon2id with the library's defaults (RFC 9106 low-memory profile), as for staff."""
    return PasswordHasher()


def hash_secret(hasher: PasswordHasher, value: str) -> str:
    """The argon2 hash of ``value`` (CPU work: run it in a worker thread)."""
    return hasher.hash(value)


def verify_secret(hasher: PasswordHasher, stored_hash: str | None, value: str) -> bool:
    """Whether ``value`` matches ``stored_hash``; False for no hash or a malformed one."""
    if not stored_hash:
        return False
    try:
        return hasher.verify(stored_hash, value)
    except (VerificationError, InvalidHashError):
        return False


def matches_any(hasher: PasswordHasher, hashes: Iterable[str | None], value: str) -> bool:
    """Whether ``value`` matches any of ``hashes`` (each verified: CPU work)."""
    return any(verify_secret(hasher, h, value) for h in hashes)


def same_text(a: str, b: str) -> bool:
    """Compare two entries in constant time."""
    return hmac.compare_digest(a.encode(), b.encode())


# --- PINs ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PinContext:
    """What a new PIN must not resemble: the customer's birth date, ID number and current PIN."""

    birth_date: str | None  # YYYY-MM-DD
    id_number_masked: str
    id_number_hmac: str = field(repr=False)
    pepper: str = field(repr=False)
    current_pin_hash: str | None = field(default=None, repr=False)


def check_pin_entry(pin: str, confirm: str) -> None:
    """``PinFormat`` unless ``pin`` is six ASCII digits, ``Mismatch`` if ``confirm`` differs."""
    if len(pin) != PIN_LENGTH or not pin.isascii() or not pin.isdigit():
        raise PinFormat()
    if not same_text(pin, confirm):
        raise Mismatch()


def is_same_digits(pin: str) -> bool:
    """``111111``."""
    return len(set(pin)) == 1


def is_sequence(pin: str) -> bool:
    """``123456``, ``654321``, and the same around the dial (``890123``, ``109876``)."""
    steps = {(int(b) - int(a)) % 10 for a, b in pairwise(pin)}
    return steps in ({1}, {9})


def birth_date_forms(birth_date: str | None) -> set[str]:
    """YYMMDD, MMDDYY and DDMMYY of a YYYY-MM-DD date (empty set without one)."""
    digits = (birth_date or "").replace("-", "")
    if len(digits) != 8 or not digits.isdigit():
        return set()
    yy, mm, dd = digits[2:4], digits[4:6], digits[6:8]
    return {yy + mm + dd, mm + dd + yy, dd + mm + yy}


def _id_template(masked: str, birth_date: str | None) -> list[str | None]:
    """The ID number's characters where known (masked form + birth date), None where not."""
    if len(masked) != _ID_LENGTH:
        return [None] * _ID_LENGTH
    template: list[str | None] = [None if c == "*" else c for c in masked]
    digits = (birth_date or "").replace("-", "")
    if len(digits) == 8 and digits.isdigit():
        template[6:14] = list(digits)
    return template


def _window_in_id(pin: str, start: int, template: list[str | None], ctx: PinContext) -> bool:
    candidate = list(template)
    for offset, digit in enumerate(pin):
        known = candidate[start + offset]
        if known is not None and known != digit:
            return False
        candidate[start + offset] = digit
    if all(template[start + i] is not None for i in range(len(pin))):
        return True  # the window is made of digits we know
    unknown = [i for i, c in enumerate(candidate) if c is None]
    if len(unknown) > 2:
        return False  # too little is known to decide (no birth date on file)
    for fill in product(string.digits, repeat=len(unknown)):
        for i, d in zip(unknown, fill, strict=True):
            candidate[i] = d
        digest = id_number_hmac(ctx.pepper, "".join(c or "" for c in candidate))
        if hmac.compare_digest(digest, ctx.id_number_hmac):
            return True
    return False


def in_id_number(pin: str, ctx: PinContext) -> bool:
    """Whether ``pin`` is six consecutive digits of the customer's ID number."""
    template = _id_template(ctx.id_number_masked, ctx.birth_date)
    return any(
        _window_in_id(pin, start, template, ctx) for start in range(_ID_LENGTH - len(pin) + 1)
    )


def pin_weakness(pin: str, ctx: PinContext, hasher: PasswordHasher) -> str | None:
    """Why a well-formed ``pin`` is weak (a ``PinWeak`` reason), or None.

    Verifies against the current PIN hash: CPU work, run it in a worker thread.
    """
    if is_same_digits(pin):
        return "same_digits"
    if is_sequence(pin):
        return "sequence"
    if pin in birth_date_forms(ctx.birth_date):
        return "birth_date"
    if in_id_number(pin, ctx):
        return "id_number"
    if verify_secret(hasher, ctx.current_pin_hash, pin):
        return "last_pin"
    return None


# --- U-key passwords ----------------------------------------------------------------------------


def character_classes(password: str) -> int:
    """How many of lower case, upper case, digit and symbol (anything else) ``password`` uses."""
    lower = any(c in string.ascii_lowercase for c in password)
    upper = any(c in string.ascii_uppercase for c in password)
    digit = any(c in string.digits for c in password)
    symbol = any(c not in string.ascii_letters + string.digits for c in password)
    return lower + upper + digit + symbol


def pin_windows(password: str) -> set[str]:
    """Every run of six consecutive digits in ``password`` (what could be the PIN reused)."""
    return {
        password[i : i + PIN_LENGTH]
        for i in range(len(password) - PIN_LENGTH + 1)
        if all(c in string.digits for c in password[i : i + PIN_LENGTH])
    }


def reuses_pin(password: str, pin_hashes: Iterable[str | None], hasher: PasswordHasher) -> bool:
    """Whether ``password`` is, or contains, the PIN of one of ``pin_hashes`` (CPU work)."""
    hashes = [h for h in pin_hashes if h]
    return any(matches_any(hasher, hashes, window) for window in sorted(pin_windows(password)))


def check_password_entry(password: str, confirm: str) -> None:
    """``PasswordWeak`` (``length``, ``charset``, ``classes``) or ``Mismatch``; else None.

    Whether it equals the PIN is checked separately (``matches_any``: argon2 work).
    """
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise PasswordWeak("length")
    if not password.isprintable():
        raise PasswordWeak("charset")
    if character_classes(password) < PASSWORD_MIN_CLASSES:
        raise PasswordWeak("classes")
    if not same_text(password, confirm):
        raise Mismatch()


# --- phones, codes, card numbers ------------------------------------------------------------------


def normalise_phone(raw: str) -> str:
    """The number an SMS goes to, or ``PhoneInvalid``.

    Without ``+``: a mainland mobile number (``1[3-9]`` and 9 digits). With ``+``: 6 to 15
    digits; ``+86`` must be followed by a mainland mobile number and is dropped, so that
    ``+86 138 0013 8000`` and ``13800138000`` are the same number. Spaces, dots, dashes and
    parentheses are ignored.
    """
    phone = _PHONE_SEPARATORS.sub("", unicodedata.normalize("NFKC", raw))
    if not phone.isascii():
        raise PhoneInvalid()
    if phone.startswith("+86"):
        phone = phone[3:]
    elif _INTERNATIONAL.fullmatch(phone):
        return phone
    if _MAINLAND_MOBILE.fullmatch(phone):
        return phone
    raise PhoneInvalid()


def same_phone(stored: str | None, normalised: str) -> bool:
    """Whether the number on file (any historic format) is ``normalised``."""
    if not stored:
        return False
    try:
        return normalise_phone(stored) == normalised
    except PhoneInvalid:
        return stored == normalised


def mask_phone(phone: str) -> str:
    """``138****5678``: the first three and last four characters; short numbers keep two."""
    if len(phone) <= 7:
        return "*" * max(len(phone) - 2, 0) + phone[-2:]
    return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]


def new_otp() -> str:
    """Six random digits from the ``secrets`` generator."""
    return f"{secrets.randbelow(10**OTP_LENGTH):0{OTP_LENGTH}d}"


def new_card_number(prefix: str, length: int = CARD_LENGTH) -> str:
    """A random Luhn-valid card number starting with ``prefix`` (the issuer's digits)."""
    if not prefix.isascii() or not prefix.isdigit() or len(prefix) >= length - 1:
        raise ValueError("the prefix must be digits, shorter than the number")
    body = prefix + "".join(secrets.choice(string.digits) for _ in range(length - len(prefix) - 1))
    return body + luhn_check_digit(body)
