"""The core-banking adapter: values and the ``CoreBanking`` Protocol every implementation meets."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

from banking.errors import InvalidCustomerData
from banking.identity import check_card_number, check_id_number, clean_name, id_number_birth_date

PHOTO_CONTENT_TYPES = ("image/jpeg", "image/png")
MAX_PHOTO_BYTES = 10 * 1024 * 1024
MAX_NAME_CHARS = 128
_PHONE_RE = re.compile(r"\+?\d{6,15}")
_PHONE_SEPARATORS = re.compile(r"[\s()-]+")


@dataclass(frozen=True, slots=True)
class CustomerRef:
    """What callers may know about a customer: id, name and the masked ID number."""

    id: int
    name: str
    id_number_masked: str


def _check_name(raw: str) -> str:
    name = clean_name(raw)
    if not name:
        raise InvalidCustomerData("name", "must not be empty")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidCustomerData("name", f"must be at most {MAX_NAME_CHARS} characters")
    return name


def _check_photo(photo: bytes, content_type: str) -> None:
    if not photo:
        raise InvalidCustomerData("photo", "is empty")
    if len(photo) > MAX_PHOTO_BYTES:
        raise InvalidCustomerData("photo", f"is larger than {MAX_PHOTO_BYTES} bytes")
    if content_type not in PHOTO_CONTENT_TYPES:
        raise InvalidCustomerData("photo_content_type", "must be image/jpeg or image/png")


def _check_birth_date(raw: str | None, id_number: str) -> str:
    """The birth date as YYYY-MM-DD; when given it must agree with the ID number's."""
    from_id = id_number_birth_date(id_number)
    if from_id is None:  # check_id_number already refused such numbers
        raise InvalidCustomerData("id_number", "does not contain a valid birth date")
    if raw is None:
        return from_id.isoformat()
    try:
        given = date.fromisoformat(raw.strip())
    except ValueError as err:
        raise InvalidCustomerData("birth_date", "must be a date as YYYY-MM-DD") from err
    if given != from_id:
        raise InvalidCustomerData("birth_date", "does not match the ID number")
    return given.isoformat()


def _check_phone(raw: str | None) -> str | None:
    if raw is None:
        return None
    phone = _PHONE_SEPARATORS.sub("", raw)
    if not phone.isascii() or not _PHONE_RE.fullmatch(phone):
        raise InvalidCustomerData("phone", "must be 6 to 15 digits, optionally after +")
    return phone


@dataclass(frozen=True, slots=True)
class NewCustomer:
    """A customer to open: validated and normalised on construction.

    Raises ``InvalidCustomerData`` naming the first bad field. After construction ``name`` is
    trimmed, ``id_number`` and ``card_number`` carry no separators, ``birth_date`` is filled in
    from the ID number when not given, and ``phone`` is digits (with an optional leading ``+``).
    Whether ``photo`` really decodes is checked by the implementation (it is CPU work).
    """

    name: str
    id_number: str = field(repr=False)
    card_number: str = field(repr=False)
    photo: bytes = field(repr=False)
    photo_content_type: str
    birth_date: str | None = None
    phone: str | None = None

    def __post_init__(self) -> None:
        # Frozen dataclass: normalised values are set once, here, through object.__setattr__.
        object.__setattr__(self, "name", _check_name(self.name))
        id_number = check_id_number(self.id_number)
        object.__setattr__(self, "id_number", id_number)
        object.__setattr__(self, "card_number", check_card_number(self.card_number))
        _check_photo(self.photo, self.photo_content_type)
        object.__setattr__(self, "birth_date", _check_birth_date(self.birth_date, id_number))
        object.__setattr__(self, "phone", _check_phone(self.phone))


@dataclass(frozen=True, slots=True)
class StoredTemplate:
    """A face template made from the reference photo, as stored (opaque bytes + model key).

    ``data`` is what ``verification.engine.Template.to_bytes`` wrote; banking keeps it, the
    verification engine reads it.
    """

    model_key: str
    data: bytes = field(repr=False)
    crop_jpeg: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        if not self.model_key or not self.data:
            raise InvalidCustomerData("template", "needs a model key and data")


class CoreBanking(Protocol):
    """The bank's customer records, as the rest of the platform sees them."""

    async def identify(self, name: str, id_number: str, card_last4: str) -> CustomerRef | None:
        """The customer with this name, ID number and a card ending in ``card_last4``.

        Returns None on any mismatch, without telling which field was wrong.
        """
        ...

    async def add_customer(
        self, new: NewCustomer, templates: Sequence[StoredTemplate] = ()
    ) -> CustomerRef:
        """Open a customer with one card and a reference photo (``DuplicateCustomer`` if the ID
        number is already known, ``InvalidCustomerData`` if the photo does not decode)."""
        ...

    async def get_customer(self, customer_id: int) -> CustomerRef:
        """The customer with this id, or ``CustomerNotFound``."""
        ...

    async def reference_template(self, customer_id: int, model_key: str) -> StoredTemplate | None:
        """The customer's template made by ``model_key``, or None."""
        ...

    async def save_template(self, customer_id: int, template: StoredTemplate) -> None:
        """Store (or replace) the customer's template of ``template.model_key``."""
        ...

    async def reference_photo(self, customer_id: int) -> tuple[bytes, str] | None:
        """The latest reference photo and its content type, or None if there is none."""
        ...
