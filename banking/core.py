"""The core-banking adapter: values and the ``CoreBanking`` Protocol every implementation meets."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
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


@dataclass(frozen=True, slots=True)
class LossReport:
    """The customer's blocked cards (masked). ``already_blocked``: nothing was active any more."""

    cards_blocked: tuple[str, ...]
    already_blocked: bool
    at: datetime  # when they were blocked (now, or the earlier report's time)


@dataclass(frozen=True, slots=True)
class ReissueOrdered:
    """A replacement card was ordered for a lost one."""

    new_card_masked: str
    replaces_card_masked: str
    at: datetime


@dataclass(frozen=True, slots=True)
class PinChanged:
    """The card's PIN was changed."""

    card_masked: str
    at: datetime


@dataclass(frozen=True, slots=True)
class PhoneChangeStarted:
    """A one-time code went to the new number; it must be typed before ``otp_expires_at``."""

    new_phone_masked: str
    otp_expires_at: datetime


@dataclass(frozen=True, slots=True)
class PhoneChanged:
    """The reserved phone number was changed; risk rules apply until ``cooling_off_until``."""

    new_phone_masked: str
    cooling_off_until: datetime
    at: datetime


@dataclass(frozen=True, slots=True)
class UkeyReset:
    """The U-key's password was reset and the key unlocked."""

    serial: str
    at: datetime


@dataclass(frozen=True, slots=True)
class CardView:
    """A card as the advisor may see it."""

    number_masked: str
    status: str  # active | lost | reissue_ordered
    blocked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class UkeyView:
    """A U-key as the advisor may see it."""

    serial: str
    status: str  # active | locked


@dataclass(frozen=True, slots=True)
class Accounts:
    """What the advisor may see of a customer's records: masked, never a secret."""

    customer_id: int
    name: str
    cards: tuple[CardView, ...]
    phone_masked: str | None
    cooling_off_until: datetime | None
    ukeys: tuple[UkeyView, ...]


@dataclass(frozen=True, slots=True)
class Notification:
    """One message of the SMS outbox. ``text`` may hold a one-time code: show it to admins only."""

    id: int
    customer_id: int | None
    recipient: str
    kind: str  # otp | notice
    text: str = field(repr=False)
    created_at: datetime


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

    # The four services. Each refusal is a ``banking.errors.OperationRefused`` with a ``code``;
    # ``grant`` is the public id of a grant of ``cases.grants`` for this case, customer and service.

    async def report_loss(self, *, customer_id: int, case_id: int) -> LossReport:
        """Block every active card at once (no grant: a loss report is never slowed). Idempotent."""
        ...

    async def order_reissue(self, *, grant: str, case_id: int, customer_id: int) -> ReissueOrdered:
        """Order a replacement for the lost card (``no_lost_card``); needs a ``card_loss`` grant."""
        ...

    async def change_pin(
        self, *, grant: str, case_id: int, customer_id: int, pin: str, confirm: str
    ) -> PinChanged:
        """Set the card's PIN (``pin_format``, ``mismatch``, ``pin_weak``); consumes the grant."""
        ...

    async def start_phone_change(
        self, *, grant: str, case_id: int, customer_id: int, new_phone: str
    ) -> PhoneChangeStarted:
        """Send a one-time code to ``new_phone`` (``phone_invalid``, ``phone_same``).

        Checks the grant without consuming it; a new start replaces the pending code.
        """
        ...

    async def confirm_phone_change(
        self, *, grant: str, case_id: int, customer_id: int, code: str
    ) -> PhoneChanged:
        """Change the phone if ``code`` is right (``otp_wrong``, ``otp_failed``, ``otp_expired``,
        ``no_otp``); notify the old number; consumes the grant."""
        ...

    async def reset_ukey(
        self, *, grant: str, case_id: int, customer_id: int, password: str, confirm: str
    ) -> UkeyReset:
        """Set the U-key password and unlock it (``mismatch``, ``password_weak``, ``no_ukey``)."""
        ...

    async def accounts(self, customer_id: int) -> Accounts:
        """The customer's cards, phone and U-keys, masked (``CustomerNotFound``)."""
        ...

    async def notifications(self, limit: int = 50) -> tuple[Notification, ...]:
        """The SMS outbox, newest first."""
        ...
