"""Demo data: staff logins and customers with reference photos, for ``make run`` and tests.

Everything here is fake except the photos, which come from the shared test data
(``<shared_data>/identity/face_recognition``, listed in its ``labels.csv``). The ID and card
numbers are made up but valid (computed check digits), so the demo user can type them.

Staff accounts are created through an injected ``create_staff`` (``web.accounts.create_staff``):
banking must not import ``web`` (see DESIGN, "who may import whom").

Every demo card gets the PIN ``DEMO_PIN`` (so that "the same as the last PIN" can be tried) and
every demo customer a U-key; some of the U-keys are locked, so that a reset visibly unlocks one.
Like the staff password, the demo PIN is demo data: ``DemoSummary.pin`` carries it for printing.
"""

from __future__ import annotations

import asyncio
import csv
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from argon2 import PasswordHasher
from sqlalchemy import select, update

from banking import hashing
from banking.core import CoreBanking, NewCustomer, StoredTemplate
from banking.errors import BankingError
from banking.identity import luhn_check_digit, prc_id_check_char
from banking.secrets import hash_secret, new_hasher
from store.blobs import BlobStore
from store.db import Database
from store.errors import BlobNotFound
from store.models import Card, Staff, Ukey

log = logging.getLogger(__name__)

# The one password of every demo staff account. Demo only: never seed a production database.
DEMO_PASSWORD = "demo-password-1"
# The PIN of every demo card (not weak for any demo customer: a test checks). Demo only.
DEMO_PIN = "802613"
DEMO_UKEY_FAILED_TRIES = 5  # what a locked demo U-key has "suffered"

StaffCreator = Callable[[Database, str, str, str, str], Awaitable[object]]
# Makes the face template of a reference photo; raises BankingError when the photo cannot serve.
Enroller = Callable[[bytes], Awaitable[StoredTemplate]]
"""``(db, username, display_name, password, role) -> StaffRef``, e.g. web.accounts.create_staff."""


@dataclass(frozen=True, slots=True)
class DemoStaff:
    """A demo staff login and whether this run created it."""

    username: str
    display_name: str
    role: str
    created: bool = False


@dataclass(frozen=True, slots=True)
class DemoCustomer:
    """A demo customer: the identification data the demo user types, and their photo."""

    name: str
    id_first17: str
    card_first15: str
    phone: str
    identity: str  # the face_recognition label whose photo is the reference
    photo_file: str  # preferred file of that identity, relative to face_recognition/
    ukey_locked: bool = False

    @property
    def ukey_serial(self) -> str:
        """``UK-`` and eight digits, unique among the demo customers."""
        return f"UK-{self.card_first15[-8:]}"

    @property
    def id_number(self) -> str:
        """The full, valid PRC resident ID number."""
        return self.id_first17 + prc_id_check_char(self.id_first17)

    @property
    def card_number(self) -> str:
        """The full, Luhn-valid card number."""
        return self.card_first15 + luhn_check_digit(self.card_first15)

    @property
    def birth_date(self) -> str:
        """YYYY-MM-DD, as encoded in the ID number."""
        d = self.id_first17[6:14]
        return f"{d[:4]}-{d[4:6]}-{d[6:8]}"


@dataclass(frozen=True, slots=True)
class DemoCustomerResult:
    """What happened to one demo customer: ``created``, ``existing`` or ``skipped`` (see note)."""

    name: str
    id_number: str
    card_last4: str
    phone: str
    birth_date: str
    status: str
    customer_id: int | None = None
    note: str = ""
    ukey_serial: str = ""


@dataclass(frozen=True, slots=True)
class DemoSummary:
    """Everything ``seed_demo`` did; demo data, so it may be printed."""

    password: str
    staff: tuple[DemoStaff, ...]
    customers: tuple[DemoCustomerResult, ...]
    pin: str = DEMO_PIN

    @property
    def created(self) -> int:
        """How many staff accounts and customers this run created."""
        return sum(s.created for s in self.staff) + sum(
            c.status == "created" for c in self.customers
        )

    @property
    def skipped(self) -> tuple[DemoCustomerResult, ...]:
        """Customers that could not be created (photo missing, conflicting record …)."""
        return tuple(c for c in self.customers if c.status == "skipped")


DEMO_STAFF = (
    DemoStaff("advisor1", "Advisor Wang", "advisor"),
    DemoStaff("advisor2", "Advisor Li", "advisor"),
    DemoStaff("supervisor1", "Supervisor Zhang", "supervisor"),
    DemoStaff("auditor1", "Auditor Chen", "auditor"),
    DemoStaff("admin", "Administrator", "admin"),
)

# Odd 17th digit: male; even: female (as on real PRC ID numbers).
DEMO_CUSTOMERS = (
    DemoCustomer(
        "Barack Obama", "11010119610804001", "622202100000101", "13800138001",
        "obama", "obama/obama.jpg", ukey_locked=True,
    ),
    DemoCustomer(
        "Joe Biden", "31010419421120003", "622202100000202", "13800138002",
        "biden", "biden/biden.jpg",
    ),
    DemoCustomer(
        "王芳", "44030519870712002", "622202100000303", "13800138003",
        "rose_leslie", "rose_leslie/img1.jpg", ukey_locked=True,
    ),
    DemoCustomer(
        "Kit Harington", "33010619861226005", "622202100000404", "13800138004",
        "kit_harington", "kit_harington/john1.jpeg",
    ),
    DemoCustomer(
        "Alex Lacamoire", "51010719730928007", "622202100000505", "13800138005",
        "alex_lacamoire", "alex_lacamoire/alex-lacamoire.png", ukey_locked=True,
    ),
    DemoCustomer(
        "Lin-Manuel Miranda", "42010619800116009", "622202100000606", "13800138006",
        "lin_manuel_miranda", "lin_manuel_miranda/lin-manuel-miranda.png",
    ),
)  # fmt: skip


def _labelled_files(folder: Path) -> dict[str, list[str]]:
    """identity → files (relative to ``folder``) from ``folder/labels.csv``; {} if absent."""
    labels = folder / "labels.csv"
    if not labels.is_file():
        return {}
    files: dict[str, list[str]] = {}
    with labels.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            rel = row["file"].removeprefix(f"{folder.name}/")
            files.setdefault(row["identity"], []).append(rel)
    return files


def _read_photo(shared_data: Path, customer: DemoCustomer) -> tuple[bytes, str] | None:
    """The customer's photo bytes and content type, or None if not available (blocking I/O)."""
    folder = shared_data / "identity" / "face_recognition"
    candidates = _labelled_files(folder).get(customer.identity, [])
    rel = customer.photo_file if customer.photo_file in candidates or not candidates else None
    path = folder / (rel or candidates[0])
    if not path.is_file():
        return None
    kind = "image/png" if path.suffix.lower() == ".png" else "image/jpeg"
    return path.read_bytes(), kind


async def _seed_staff(db: Database, create_staff: StaffCreator) -> tuple[DemoStaff, ...]:
    usernames = [s.username for s in DEMO_STAFF]
    async with db.session() as s, s.begin():
        existing = set(
            (await s.scalars(select(Staff.username).where(Staff.username.in_(usernames)))).all()
        )
    out = []
    for staff in DEMO_STAFF:
        if staff.username not in existing:
            await create_staff(db, staff.username, staff.display_name, DEMO_PASSWORD, staff.role)
        out.append(
            DemoStaff(
                staff.username, staff.display_name, staff.role, staff.username not in existing
            )
        )
    return tuple(out)


def _result(
    c: DemoCustomer, status: str, customer_id: int | None = None, note: str = ""
) -> DemoCustomerResult:
    return DemoCustomerResult(
        c.name,
        c.id_number,
        c.card_number[-4:],
        c.phone,
        c.birth_date,
        status,
        customer_id,
        note,
        c.ukey_serial if customer_id is not None else "",
    )


async def _seed_credentials(
    db: Database, customer_id: int, c: DemoCustomer, hasher: PasswordHasher
) -> None:
    """Give the customer's cards the demo PIN and the customer a U-key, where missing."""
    async with db.session() as s, s.begin():
        no_pin = (
            await s.scalars(
                select(Card.id).where(Card.customer_id == customer_id, Card.pin_hash.is_(None))
            )
        ).all()
        has_ukey = await s.scalar(select(Ukey.id).where(Ukey.customer_id == customer_id))
    pin_hash = await hashing.run(hash_secret, hasher, DEMO_PIN) if no_pin else None
    async with db.session() as s, s.begin():
        if pin_hash is not None:
            await s.execute(update(Card).where(Card.id.in_(no_pin)).values(pin_hash=pin_hash))
        if has_ukey is None:
            s.add(
                Ukey(
                    customer_id=customer_id,
                    serial=c.ukey_serial,
                    status="locked" if c.ukey_locked else "active",
                    password_hash=None,
                    failed_tries=DEMO_UKEY_FAILED_TRIES if c.ukey_locked else 0,
                    updated_at=datetime.now(UTC),
                )
            )


async def _seed_customer(
    c: DemoCustomer,
    blobs: BlobStore,
    banking: CoreBanking,
    shared_data: Path,
    enrol: Enroller | None,
) -> DemoCustomerResult:
    photo = await asyncio.to_thread(_read_photo, shared_data, c)
    existing = await banking.identify(c.name, c.id_number, c.card_number[-4:])
    if existing is not None:
        if photo is not None:
            await _restore_photo(existing.id, photo[0], blobs, banking)
            await _backfill_template(existing.id, photo[0], banking, enrol)
        return _result(c, "existing", existing.id)
    if photo is None:
        return _result(c, "skipped", note=f"no photo for {c.identity!r} under {shared_data}")
    new = NewCustomer(c.name, c.id_number, c.card_number, photo[0], photo[1], c.birth_date, c.phone)
    try:
        templates = [await enrol(photo[0])] if enrol is not None else []
        ref = await banking.add_customer(new, templates)
    except BankingError as err:
        return _result(c, "skipped", note=str(err))
    return _result(c, "created", ref.id)


async def _backfill_template(
    customer_id: int, photo: bytes, banking: CoreBanking, enrol: Enroller | None
) -> None:
    """Give a customer seeded before face templates existed the template of today's engine."""
    if enrol is None:
        return
    try:
        template = await enrol(photo)
    except BankingError:
        return
    if await banking.reference_template(customer_id, template.model_key) is None:
        await banking.save_template(customer_id, template)


async def _restore_photo(
    customer_id: int, photo: bytes, blobs: BlobStore, banking: CoreBanking
) -> None:
    """Put the photo's blob back if the blob folder was wiped but the database kept."""
    try:
        await banking.reference_photo(customer_id)
    except BlobNotFound:
        await blobs.put(photo)


async def seed_demo(
    db: Database,
    blobs: BlobStore,
    banking: CoreBanking,
    shared_data: Path,
    *,
    create_staff: StaffCreator,
    enrol: Enroller | None = None,
    hasher: PasswordHasher | None = None,
) -> DemoSummary:
    """Create the demo staff and customers that do not exist yet (running it twice is a no-op).

    Customers whose photo is missing from ``shared_data`` are skipped and listed as such. Cards
    without a PIN get ``DEMO_PIN`` and customers without a U-key get one (also for customers an
    earlier version seeded). ``hasher`` hashes the PIN (argon2id defaults when None).
    """
    staff = await _seed_staff(db, create_staff)
    customers = [
        await _seed_customer(c, blobs, banking, shared_data, enrol) for c in DEMO_CUSTOMERS
    ]
    pin_hasher = hasher or new_hasher()
    for c, row in zip(DEMO_CUSTOMERS, customers, strict=True):
        if row.customer_id is not None:
            await _seed_credentials(db, row.customer_id, c, pin_hasher)
    summary = DemoSummary(DEMO_PASSWORD, staff, tuple(customers))
    log.info("demo data seeded: %d created, %d skipped", summary.created, len(summary.skipped))
    return summary
