"""The one validating layer for HTTP query and form parameters.

Each reader takes the request's parameters and a field name and returns a bounded, typed value
(or ``None`` when the field is empty), or raises :class:`BadParam` naming the field. The errors
middleware answers a ``BadParam`` with 400: JSON ``{"error", "message", "field"}`` when JSON is
asked for, else a short text; a page may catch it to show the error beside its field. Readers
never hand ``int()`` or ``date.fromisoformat`` anything they have not checked first: no
``ValueError`` from Python's digit limit, superscript digits (``"²".isdigit()``) or dates past
``date.max``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date

# The largest id the database's INTEGER columns hold (PostgreSQL's are 32-bit).
MAX_ID = 2**31 - 1
MAX_TEXT = 200
# Days a search may name: wide, but one day either side of them still is a date.
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(2999, 12, 31)

_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_MAX_DIGITS = 18  # int() is only given numbers this short (Python refuses over 4,300 digits)
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)

Params = Mapping[str, object]


class BadParam(ValueError):
    """A parameter that cannot be read: ``field`` names it, ``code`` says why."""

    def __init__(self, field: str, code: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.code = code
        self.message = message

    def as_json(self) -> dict[str, str]:
        """The 400 body (the project's error shape, with the field)."""
        return {"error": self.code, "message": f"{self.field}: {self.message}", "field": self.field}


def _value(params: Params, name: str) -> str | None:
    raw = params.get(name)
    if raw is None:
        return None
    if not isinstance(raw, str):  # a file in a multipart form
        raise BadParam(name, "bad_text", "must be text")
    return raw.strip() or None


def text(params: Params, name: str, *, max_length: int = MAX_TEXT) -> str | None:
    """A text field, stripped; ``None`` when absent or empty."""
    value = _value(params, name)
    if value is None:
        return None
    if len(value) > max_length:
        raise BadParam(name, "too_long", f"at most {max_length} characters")
    if not value.isprintable():
        raise BadParam(name, "bad_text", "holds control characters")
    return value


def integer(params: Params, name: str, *, lo: int = 1, hi: int = MAX_ID) -> int | None:
    """A whole number written in ASCII digits, between ``lo`` and ``hi``."""
    value = _value(params, name)
    if value is None:
        return None
    if not _DIGITS.fullmatch(value):
        raise BadParam(name, "bad_number", "not a whole number")
    number = int(value) if len(value.lstrip("0")) <= _MAX_DIGITS else None
    if number is None or not lo <= number <= hi:
        raise BadParam(name, "out_of_range", f"must be from {lo} to {hi}")
    return number


def day(params: Params, name: str) -> date | None:
    """A date as ``YYYY-MM-DD``, from :data:`FIRST_DAY` to :data:`LAST_DAY`."""
    value = _value(params, name)
    if value is None:
        return None
    if not _DAY.fullmatch(value):
        raise BadParam(name, "bad_date", "not a date (YYYY-MM-DD)")
    try:
        parsed = date.fromisoformat(value)
    except ValueError as err:
        raise BadParam(name, "bad_date", "not a date (YYYY-MM-DD)") from err
    if not FIRST_DAY <= parsed <= LAST_DAY:
        raise BadParam(name, "out_of_range", f"must be from {FIRST_DAY} to {LAST_DAY}")
    return parsed


def choice(params: Params, name: str, allowed: Sequence[str]) -> str | None:
    """One of ``allowed``."""
    value = _value(params, name)
    if value is not None and value not in allowed:
        raise BadParam(name, "bad_choice", f"must be one of {', '.join(allowed)}")
    return value
