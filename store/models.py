"""SQLAlchemy models: the tables every package shares.

Business rules live in ``banking/`` and ``cases/``; these classes only describe rows. Migrations in
``store/migrations`` must match them (a test compares the two).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of every CloudBranch table."""


class Staff(Base):
    """A member of staff who logs in with username + password (argon2 hash)."""

    __tablename__ = "staff"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128))
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))  # advisor | supervisor | auditor | admin
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Customer(Base):
    """A bank customer. The ID number is stored only as a keyed hash and a masked form."""

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    id_number_hmac: Mapped[str] = mapped_column(String(64), unique=True)
    id_number_masked: Mapped[str] = mapped_column(String(32))
    birth_date: Mapped[str | None] = mapped_column(String(10), nullable=True)  # YYYY-MM-DD
    phone: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Set after a reserved-phone change: risk rules treat the customer with extra care until then.
    cooling_off_until: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )


class Card(Base):
    """A debit card; only the last four digits and a masked number are kept in clear.

    Status: ``active`` → ``lost`` (blocked, ``blocked_at`` set); a reissued card is a new row in
    ``reissue_ordered`` whose ``replaces_card_id`` names the lost one.
    """

    __tablename__ = "cards"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    number_masked: Mapped[str] = mapped_column(String(32))
    last4: Mapped[str] = mapped_column(String(4))
    status: Mapped[str] = mapped_column(String(24), default="active")
    pin_hash: Mapped[str | None] = mapped_column(String(256), nullable=True)
    pin_retries: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    blocked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    replaces_card_id: Mapped[int | None] = mapped_column(ForeignKey("cards.id"), nullable=True)


class ReferencePhoto(Base):
    """The photo on file for a customer, stored in the blob store under its SHA-256."""

    __tablename__ = "reference_photos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    blob_key: Mapped[str] = mapped_column(String(64))  # sha256 hex of the bytes
    content_type: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ConsentText(Base):
    """A versioned recording-consent text, one row per version and language."""

    __tablename__ = "consent_texts"
    __table_args__ = (UniqueConstraint("version", "lang"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(32))
    lang: Mapped[str] = mapped_column(String(8))
    text: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Case(Base):
    """One customer request from intake to close (states: cases.states.CaseState)."""

    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)  # random, shown in URLs
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    service: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), index=True)
    lang: Mapped[str] = mapped_column(String(8))
    elderly_mode: Mapped[bool] = mapped_column(default=False)
    consent_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    consent_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    consented_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    advisor_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    call_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    call_ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ended_by: Mapped[str | None] = mapped_column(String(16), nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # What the service did, as the receipt shows it (JSON: "blocked", "receipt"; masked values).
    outcome: Mapped[str | None] = mapped_column(Text, nullable=True)


class ChatMessage(Base):
    """A text message sent during a call."""

    __tablename__ = "chat_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    sender: Mapped[str] = mapped_column(String(16))  # customer | advisor
    text: Mapped[str] = mapped_column(Text)
    sent_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WebSession(Base):
    """A browser session; the cookie carries a random token, the table only its SHA-256."""

    __tablename__ = "web_sessions"
    __table_args__ = (Index("ix_web_sessions_expires", "expires_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # staff | customer
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), nullable=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), nullable=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class IdentifyAttempt(Base):
    """A failed customer identification, kept to rate-limit guessing (shared by all nodes)."""

    __tablename__ = "identify_attempts"
    __table_args__ = (Index("ix_identify_attempts_key_at", "client_key", "attempted_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_key: Mapped[str] = mapped_column(String(64))  # HMAC of a limit's scope and subject
    attempted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ReferenceTemplate(Base):
    """A face template computed from a customer's reference photo by one model."""

    __tablename__ = "reference_templates"
    __table_args__ = (UniqueConstraint("customer_id", "model_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    model_key: Mapped[str] = mapped_column(String(160))
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    crop_blob_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class VerificationAttempt(Base):
    """One liveness + face-match attempt during a call, with its outcome and evidence."""

    __tablename__ = "verification_attempts"
    __table_args__ = (Index("ix_verification_attempts_customer_at", "customer_id", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    advisor_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), nullable=True)
    nonce: Mapped[str] = mapped_column(String(64))
    challenges: Mapped[str] = mapped_column(Text)  # JSON list of challenge codes
    state: Mapped[str] = mapped_column(String(16))  # running | passed | failed | referred | aborted
    reasons: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of reason codes
    scores: Mapped[str] = mapped_column(Text, default="{}")  # JSON object
    policy_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    evidence_blob_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    best_frame_blob_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The advisor's review of the result: confirmed | declined (None: not reviewed).
    review: Mapped[str | None] = mapped_column(String(16), nullable=True)
    review_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    reviewed_by: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), nullable=True)
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Set by the retention run when the evidence blobs were deleted (the keys stay as a record).
    evidence_deleted_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )


class VerificationLock(Base):
    """Verification locked for a customer after too many failures (cleared by staff)."""

    __tablename__ = "verification_locks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), unique=True)
    reason: Mapped[str] = mapped_column(String(64))
    locked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Ukey(Base):
    """A U-key (USB token) of a customer; its password is kept only as an argon2 hash."""

    __tablename__ = "ukeys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    serial: Mapped[str] = mapped_column(String(32), unique=True)
    status: Mapped[str] = mapped_column(String(16))  # active | locked
    password_hash: Mapped[str | None] = mapped_column(String(256), nullable=True)
    failed_tries: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Notification(Base):
    """The SMS outbox: the stand-in for the SMS gateway (one row per message)."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), nullable=True)
    recipient: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))  # otp | notice
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Grant(Base):
    """A single-use authorisation to run one service for one customer in one case.

    Issued by ``cases.grants``; consumed by ``banking`` with a conditional UPDATE of ``used_at``.
    """

    __tablename__ = "grants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(64), unique=True)  # secrets.token_urlsafe
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    service: Mapped[str] = mapped_column(String(32))
    attempt_id: Mapped[int] = mapped_column(ForeignKey("verification_attempts.id"))
    confirmed_by: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    approved_by: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Approval(Base):
    """A second staff member's decision on a service that needs four eyes (``ukey_reset``)."""

    __tablename__ = "approvals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("verification_attempts.id"))
    service: Mapped[str] = mapped_column(String(32))
    requested_by: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    state: Mapped[str] = mapped_column(String(16), index=True)  # pending | approved | rejected
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class PhoneOtp(Base):
    """A one-time code sent to the new phone number of a reserved-phone change."""

    __tablename__ = "phone_otps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    grant_id: Mapped[int] = mapped_column(ForeignKey("grants.id"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    new_phone: Mapped[str] = mapped_column(String(32))
    code_hash: Mapped[str] = mapped_column(String(256))  # argon2
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    wrong_tries: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16))  # pending | verified | failed | replaced


class AuditEvent(Base):
    """One step of a case, as auditors see it. Append-only: a trigger refuses UPDATE and DELETE.

    Hash-chained (``store.chain``): ``seq`` counts 1, 2, 3 … without gaps, ``prev_hash`` is the
    ``hash`` of event ``seq - 1``, ``hash`` covers ``prev_hash`` and every field below.

    No foreign keys on purpose: the log must accept an event that names a case or grant which
    does not exist (a refused request) and must never block deleting other rows.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_case_id", "case_id", "id"),
        Index("ix_audit_events_seq", "seq", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor_kind: Mapped[str] = mapped_column(String(16))  # customer | staff | system
    actor_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    case_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    grant_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    action: Mapped[str] = mapped_column(String(48))
    outcome: Mapped[str] = mapped_column(String(16))  # ok | refused | failed
    detail: Mapped[str] = mapped_column(Text, default="{}")  # JSON, never a secret
    seq: Mapped[int] = mapped_column(Integer)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditCheckpoint(Base):
    """The log's head (event ``seq`` and its ``hash``) signed with the audit key. Append-only.

    ``signature`` is base64 of the Ed25519 signature of ``store.signing.checkpoint_message``;
    ``key_id`` names the key (``store.signing.key_id``).
    """

    __tablename__ = "audit_checkpoints"
    __table_args__ = (Index("ix_audit_checkpoints_seq", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    signature: Mapped[str] = mapped_column(String(128))
    key_id: Mapped[str] = mapped_column(String(32))


class Recording(Base):
    """One party's recording of a call (a WebM with that party's audio and video tracks).

    ``offset_ms`` places the file's time 0 on the call's common clock, whose zero is
    ``clock_zero``: the customer's and the advisor's files play in sync at ``t - offset_ms``.
    """

    __tablename__ = "recordings"
    __table_args__ = (UniqueConstraint("case_id", "side", name="uq_recordings_case_side"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    side: Mapped[str] = mapped_column(String(16))  # customer | advisor
    blob_key: Mapped[str] = mapped_column(String(64))  # sha256 hex of the file
    content_type: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column(BigInteger)
    duration_ms: Mapped[int] = mapped_column(Integer)
    offset_ms: Mapped[int] = mapped_column(Integer)
    clock_zero: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    video_frames: Mapped[int] = mapped_column(Integer)
    audio_frames: Mapped[int] = mapped_column(Integer)
    dropped_frames: Mapped[int] = mapped_column(Integer)
    recovered: Mapped[bool] = mapped_column(default=False)  # finished by crash recovery
    stored_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class CaseReview(Base):
    """Where the auditors' review of a closed case stands (states: ``cases.review``)."""

    __tablename__ = "case_reviews"

    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    flags: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of automatic flag codes
    first_auditor_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ReviewVerdict(Base):
    """One auditor's verdict on a case (confirm or flag), with the comment. Never changed."""

    __tablename__ = "review_verdicts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    auditor_id: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    verdict: Mapped[str] = mapped_column(String(16))  # confirm | flag
    comment: Mapped[str] = mapped_column(Text, default="")
    state_after: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
