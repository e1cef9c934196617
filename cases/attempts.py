"""Persistence of verification attempts, per-case and per-customer limits, and locks."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from cases.errors import InvalidTransition
from store.audit import add_event
from store.db import Database
from store.models import VerificationAttempt, VerificationLock

# What counts towards the customer's lock (5 in 24 hours): a failed attempt, and one that was
# started and not completed (hang-up, page closed, the advisor stopped it, the server crashed
# while it ran). An "undecided" attempt (the server fell behind) counts for nothing.
FAILED_STATES = ("failed", "aborted")
NOT_COUNTED = ("undecided",)
# No attempt runs this long (baseline, three challenges, the decision, the server's stalls).
STALE_RUNNING = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """A stored attempt, as the advisor's evidence endpoints need it."""

    public_id: str
    case_id: int
    customer_id: int
    advisor_id: int | None
    state: str
    best_frame_blob_key: str | None
    evidence_blob_key: str | None


@dataclass(frozen=True, slots=True)
class Finished:
    """What an attempt ended with."""

    state: str  # passed | failed | referred | aborted | undecided
    reasons: tuple[str, ...] = ()
    scores: dict[str, float] = field(default_factory=dict)
    policy_version: str | None = None
    evidence_blob_key: str | None = None
    best_frame_blob_key: str | None = None


def _record(row: VerificationAttempt) -> AttemptRecord:
    return AttemptRecord(
        row.public_id,
        row.case_id,
        row.customer_id,
        row.advisor_id,
        row.state,
        row.best_frame_blob_key,
        row.evidence_blob_key,
    )


class AttemptStore:
    """Verification attempts in the database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self, case_id: int, customer_id: int, advisor_id: int, nonce: str, challenges: list[str]
    ) -> str:
        """Record a running attempt; returns its public id."""
        public_id = secrets.token_urlsafe(12)
        async with self._db.session() as s, s.begin():
            s.add(
                VerificationAttempt(
                    public_id=public_id,
                    case_id=case_id,
                    customer_id=customer_id,
                    advisor_id=advisor_id,
                    nonce=nonce,
                    challenges=json.dumps(challenges),
                    state="running",
                    reasons="[]",
                    scores="{}",
                    started_at=datetime.now(UTC),
                )
            )
            await add_event(
                s,
                action="verification.started",
                outcome="ok",
                actor_kind="staff",
                actor_id=advisor_id,
                case_id=case_id,
                detail={"attempt": public_id, "challenges": challenges},
            )
        return public_id

    async def finish(self, public_id: str, done: Finished) -> None:
        """Store the outcome of a running attempt."""
        async with self._db.session() as s, s.begin():
            row = await s.scalar(
                select(VerificationAttempt).where(VerificationAttempt.public_id == public_id)
            )
            if row is None:
                raise LookupError(f"no attempt {public_id!r}")
            if row.state != "running":  # an attempt's outcome is written once, never rewritten
                raise InvalidTransition("verification attempt", row.state, done.state)
            row.state = done.state
            row.reasons = json.dumps(list(done.reasons))
            row.scores = json.dumps(done.scores)
            row.policy_version = done.policy_version
            row.evidence_blob_key = done.evidence_blob_key
            row.best_frame_blob_key = done.best_frame_blob_key
            row.ended_at = datetime.now(UTC)
            await add_event(
                s,
                action="verification.finished",
                outcome="ok" if done.state == "passed" else "failed",
                actor_kind="system",
                case_id=row.case_id,
                detail={
                    "attempt": public_id,
                    "state": done.state,
                    "reasons": list(done.reasons),
                    "policy_version": done.policy_version,
                },
            )

    async def get(self, public_id: str) -> AttemptRecord | None:
        """A stored attempt, or None."""
        async with self._db.session() as s:
            row = await s.scalar(
                select(VerificationAttempt).where(VerificationAttempt.public_id == public_id)
            )
        return None if row is None else _record(row)

    async def log_evidence_view(self, staff_id: int, attempt: AttemptRecord, image: str) -> None:
        """One staff view of an attempt's evidence image (``best`` or ``reference``): an
        audit event of the case, written before the image is sent."""
        async with self._db.session() as s, s.begin():
            await add_event(
                s,
                action="evidence.viewed",
                outcome="ok",
                actor_kind="staff",
                actor_id=staff_id,
                case_id=attempt.case_id,
                detail={"attempt_id": attempt.public_id, "image": image},
            )

    async def count_for_case(self, case_id: int) -> int:
        """Attempts made in a case (every state but "undecided" counts)."""
        async with self._db.session() as s:
            n = await s.scalar(
                select(func.count())
                .select_from(VerificationAttempt)
                .where(
                    VerificationAttempt.case_id == case_id,
                    VerificationAttempt.state.not_in(NOT_COUNTED),
                )
            )
        return int(n or 0)

    async def abandon_running(
        self, customer_id: int | None = None, older_than: timedelta = STALE_RUNNING
    ) -> int:
        """Attempts still "running" long after any attempt ends (``older_than``): their process
        stopped without finishing them (a crash). Stored as aborted, so they count like a
        hang-up. Only old ones: another node may be running a fresh one. Returns how many."""
        since = datetime.now(UTC) - older_than
        query = select(VerificationAttempt).where(
            VerificationAttempt.state == "running", VerificationAttempt.started_at < since
        )
        if customer_id is not None:
            query = query.where(VerificationAttempt.customer_id == customer_id)
        async with self._db.session() as s, s.begin():
            rows = list(await s.scalars(query))
            for row in rows:
                row.state = "aborted"
                row.reasons = json.dumps(["attempt.interrupted"])
                row.ended_at = datetime.now(UTC)
                await add_event(
                    s,
                    action="verification.finished",
                    outcome="failed",
                    actor_kind="system",
                    case_id=row.case_id,
                    detail={
                        "attempt": row.public_id,
                        "state": "aborted",
                        "reasons": ["attempt.interrupted"],
                        "policy_version": None,
                    },
                )
        return len(rows)

    async def failures_since(self, customer_id: int, hours: int) -> int:
        """Failed attempts of a customer in the last ``hours``."""
        since = datetime.now(UTC) - timedelta(hours=hours)
        async with self._db.session() as s:
            n = await s.scalar(
                select(func.count())
                .select_from(VerificationAttempt)
                .where(
                    VerificationAttempt.customer_id == customer_id,
                    VerificationAttempt.state.in_(FAILED_STATES),
                    VerificationAttempt.started_at >= since,
                )
            )
        return int(n or 0)

    async def is_locked(self, customer_id: int) -> bool:
        """Whether verification is locked for this customer."""
        async with self._db.session() as s:
            row = await s.scalar(
                select(VerificationLock.id).where(VerificationLock.customer_id == customer_id)
            )
        return row is not None

    async def lock(self, customer_id: int, reason: str) -> bool:
        """Lock verification for a customer; False when it already was."""
        async with self._db.session() as s, s.begin():
            if await s.scalar(
                select(VerificationLock.id).where(VerificationLock.customer_id == customer_id)
            ):
                return False
            s.add(
                VerificationLock(
                    customer_id=customer_id, reason=reason, locked_at=datetime.now(UTC)
                )
            )
        return True
