"""``CoreBanking`` over the platform's own SQL database and blob store (the embedded default)."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from argon2 import PasswordHasher
from PIL import Image
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from banking import operations, phone
from banking.core import (
    Accounts,
    CustomerRef,
    LossReport,
    NewCustomer,
    Notification,
    PhoneChanged,
    PhoneChangeStarted,
    PinChanged,
    ReissueOrdered,
    StoredTemplate,
    UkeyReset,
)
from banking.errors import CustomerNotFound, DuplicateCustomer, InvalidCustomerData
from banking.identity import id_number_hmac, mask_card_number, mask_id_number, names_match
from banking.operations import DEFAULT_HOTLINE, BankContext
from banking.secrets import new_hasher
from store.blobs import BlobStore
from store.db import Database
from store.models import Card, Customer, ReferencePhoto, ReferenceTemplate

log = logging.getLogger(__name__)

_PIL_CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}


def decoded_content_type(photo: bytes) -> str:
    """Fully decode ``photo`` and return its content type; ``InvalidCustomerData`` otherwise.

    CPU work: call it in a worker thread.
    """
    try:
        with Image.open(io.BytesIO(photo)) as image:
            image.load()
            kind = image.format or ""
    except Exception as err:  # Pillow raises many types (OSError, SyntaxError, bomb errors …)
        raise InvalidCustomerData("photo", "is not a readable JPEG or PNG image") from err
    if kind not in _PIL_CONTENT_TYPES:
        raise InvalidCustomerData("photo", "is not a JPEG or PNG image")
    return _PIL_CONTENT_TYPES[kind]


def _ref(customer: Customer) -> CustomerRef:
    return CustomerRef(customer.id, customer.name, customer.id_number_masked)


def _rows_for(
    new: NewCustomer, hmac_hex: str, blob_key: str
) -> tuple[Customer, Card, ReferencePhoto]:
    now = datetime.now(UTC)
    customer = Customer(
        name=new.name,
        id_number_hmac=hmac_hex,
        id_number_masked=mask_id_number(new.id_number),
        birth_date=new.birth_date,
        phone=new.phone,
        created_at=now,
    )
    card = Card(
        number_masked=mask_card_number(new.card_number),
        last4=new.card_number[-4:],
        status="active",
        pin_retries=0,
        created_at=now,
    )
    photo = ReferencePhoto(blob_key=blob_key, content_type=new.photo_content_type, created_at=now)
    return customer, card, photo


def _template_row(
    customer_id: int, template: StoredTemplate, crop_key: str | None, now: datetime
) -> ReferenceTemplate:
    return ReferenceTemplate(
        customer_id=customer_id,
        model_key=template.model_key,
        vector=template.data,
        crop_blob_key=crop_key,
        created_at=now,
    )


class SqlCoreBanking:
    """``CoreBanking`` on ``store`` tables; ID numbers are kept only as HMAC and masked form.

    ``pepper`` is the server secret keying the ID-number HMAC: changing it orphans every customer.
    ``hasher`` hashes PINs, U-key passwords and one-time codes (argon2id defaults when None; tests
    pass a cheaper one). ``hotline`` is the number the notice to an old phone number gives.
    """

    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        pepper: str,
        *,
        hasher: PasswordHasher | None = None,
        hotline: str = DEFAULT_HOTLINE,
    ) -> None:
        if not pepper:
            raise ValueError("the pepper must not be empty")
        self._db = db
        self._blobs = blobs
        self._pepper = pepper
        self._ops = BankContext(db, hasher or new_hasher(), pepper, hotline)

    async def identify(self, name: str, id_number: str, card_last4: str) -> CustomerRef | None:
        """The customer matching all three fields, or None (never says which field failed)."""
        key = id_number_hmac(self._pepper, id_number)
        query = (
            select(Customer, Card.last4)
            .outerjoin(Card, Card.customer_id == Customer.id)
            .where(Customer.id_number_hmac == key)
        )
        async with self._db.session() as s, s.begin():
            rows = (await s.execute(query)).all()
        if not rows:
            return None
        customer = rows[0][0]
        card_ok = any(last4 == card_last4.strip() for _, last4 in rows if last4 is not None)
        name_ok = names_match(customer.name, name)
        return _ref(customer) if card_ok and name_ok else None

    async def add_customer(
        self, new: NewCustomer, templates: Sequence[StoredTemplate] = ()
    ) -> CustomerRef:
        """Open the customer, their card, reference photo and templates in one transaction."""
        detected = await asyncio.to_thread(decoded_content_type, new.photo)
        if detected != new.photo_content_type:
            raise InvalidCustomerData("photo_content_type", f"the photo is {detected}")
        key = id_number_hmac(self._pepper, new.id_number)
        # Content-addressed, so a blob left behind by a failed transaction is harmless.
        blob_key = await self._blobs.put(new.photo)
        customer, card, photo = _rows_for(new, key, blob_key)
        now = datetime.now(UTC)
        crops = [await self._put_crop(t) for t in templates]
        try:
            async with self._db.session() as s, s.begin():
                if await s.scalar(select(Customer.id).where(Customer.id_number_hmac == key)):
                    raise DuplicateCustomer()
                s.add(customer)
                await s.flush()
                card.customer_id = customer.id
                photo.customer_id = customer.id
                s.add_all([card, photo])
                s.add_all(
                    _template_row(customer.id, t, crop, now)
                    for t, crop in zip(templates, crops, strict=True)
                )
        except IntegrityError as err:  # a concurrent insert of the same ID number
            raise DuplicateCustomer() from err
        log.info(
            "customer opened",
            extra={"customer_id": customer.id, "id_number_masked": customer.id_number_masked},
        )
        return _ref(customer)

    async def get_customer(self, customer_id: int) -> CustomerRef:
        """The customer with this id, or ``CustomerNotFound``."""
        async with self._db.session() as s, s.begin():
            customer = await s.get(Customer, customer_id)
        if customer is None:
            raise CustomerNotFound(customer_id)
        return _ref(customer)

    async def reference_template(self, customer_id: int, model_key: str) -> StoredTemplate | None:
        """The customer's template made by ``model_key``, or None."""
        query = select(ReferenceTemplate).where(
            ReferenceTemplate.customer_id == customer_id, ReferenceTemplate.model_key == model_key
        )
        async with self._db.session() as s:
            row = await s.scalar(query)
        if row is None:
            return None
        crop = await self._blobs.get(row.crop_blob_key) if row.crop_blob_key else b""
        return StoredTemplate(row.model_key, row.vector, crop)

    async def save_template(self, customer_id: int, template: StoredTemplate) -> None:
        """Store (or replace) the customer's template of ``template.model_key``."""
        crop_key = await self._put_crop(template)
        async with self._db.session() as s, s.begin():
            if await s.get(Customer, customer_id) is None:
                raise CustomerNotFound(customer_id)
            await s.execute(
                delete(ReferenceTemplate).where(
                    ReferenceTemplate.customer_id == customer_id,
                    ReferenceTemplate.model_key == template.model_key,
                )
            )
            s.add(_template_row(customer_id, template, crop_key, datetime.now(UTC)))

    async def _put_crop(self, template: StoredTemplate) -> str | None:
        return await self._blobs.put(template.crop_jpeg) if template.crop_jpeg else None

    async def reference_photo(self, customer_id: int) -> tuple[bytes, str] | None:
        """The latest reference photo and its content type, or None.

        Raises ``store.errors.BlobNotFound`` if the row exists but the blob is gone.
        """
        query = (
            select(ReferencePhoto)
            .where(ReferencePhoto.customer_id == customer_id)
            .order_by(ReferencePhoto.created_at.desc(), ReferencePhoto.id.desc())
            .limit(1)
        )
        async with self._db.session() as s, s.begin():
            row = await s.scalar(query)
        if row is None:
            return None
        return await self._blobs.get(row.blob_key), row.content_type

    # --- the four services (banking/operations.py, banking/phone.py) ---------------------------

    async def report_loss(self, *, customer_id: int, case_id: int) -> LossReport:
        """Block every active card at once; no grant. Idempotent."""
        return await operations.report_loss(self._ops, customer_id, case_id)

    async def order_reissue(self, *, grant: str, case_id: int, customer_id: int) -> ReissueOrdered:
        """Order a replacement for the lost card; consumes a ``card_loss`` grant."""
        return await operations.order_reissue(self._ops, grant, case_id, customer_id)

    async def change_pin(
        self, *, grant: str, case_id: int, customer_id: int, pin: str, confirm: str
    ) -> PinChanged:
        """Set the card's PIN; consumes a ``pin_change`` grant."""
        return await operations.change_pin(self._ops, grant, case_id, customer_id, pin, confirm)

    async def start_phone_change(
        self, *, grant: str, case_id: int, customer_id: int, new_phone: str
    ) -> PhoneChangeStarted:
        """Send a one-time code to the new number; checks the ``phone_change`` grant."""
        return await phone.start_phone_change(self._ops, grant, case_id, customer_id, new_phone)

    async def confirm_phone_change(
        self, *, grant: str, case_id: int, customer_id: int, code: str
    ) -> PhoneChanged:
        """Change the phone if ``code`` is right; consumes the ``phone_change`` grant."""
        return await phone.confirm_phone_change(self._ops, grant, case_id, customer_id, code)

    async def reset_ukey(
        self, *, grant: str, case_id: int, customer_id: int, password: str, confirm: str
    ) -> UkeyReset:
        """Set the U-key password and unlock it; consumes a ``ukey_reset`` grant."""
        return await operations.reset_ukey(
            self._ops, grant, case_id, customer_id, password, confirm
        )

    async def accounts(self, customer_id: int) -> Accounts:
        """The customer's cards, phone and U-keys, masked."""
        return await operations.accounts(self._ops, customer_id)

    async def notifications(self, limit: int = 50) -> tuple[Notification, ...]:
        """The SMS outbox, newest first."""
        return await operations.notifications(self._ops, limit)
