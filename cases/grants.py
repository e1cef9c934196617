"""Authorisation of a service: the advisor's confirmation of a passed verification, the
supervisor's approval where the service needs four eyes, and the single-use grant they issue.

A grant is bound to case, customer, service and the verification attempt, and expires
:data:`GRANT_TTL` after issue; ``banking`` consumes it in the transaction that changes the
record (docs/services.md). Every decision here writes its audit event in its own transaction.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from cases.errors import Refused
from cases.states import CaseState
from cases.store import CaseRef
from store.audit import add_event
from store.db import Database
from store.models import Approval, Case, Customer, Grant, Staff, VerificationAttempt

GRANT_TTL = timedelta(minutes=5)
ATTEMPT_MAX_AGE = timedelta(minutes=10)  # a passed attempt older than this must be redone
NEEDS_GRANT = frozenset({"pin_change", "card_loss", "phone_change", "ukey_reset"})
FOUR_EYES = frozenset({"ukey_reset"})
MAX_REASON = 200


class GrantError(Refused):
    """A confirmation, decline or approval that cannot be accepted; ``code`` says why."""


@dataclass(frozen=True, slots=True)
class Live:
    """The live grant of a case (never leaves the server)."""

    id: int
    public_id: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class PendingItem:
    """An approval waiting for a supervisor."""

    id: int
    case: str
    customer: str
    service: str
    advisor: str
    requested_at: datetime
    attempt_id: str


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class GrantDesk:
    """Confirmations, declines, approvals and grants, in the database."""

    def __init__(self, db: Database, clock: Callable[[], datetime] = _utcnow) -> None:
        self._db = db
        self._now = clock

    # ---- the advisor ---------------------------------------------------------------------

    async def confirm(self, case: CaseRef, attempt_id: str, staff_id: int) -> str:
        """Confirm the passed attempt ``attempt_id``: issue the grant, or ask a supervisor
        (``ukey_reset``). Returns ``"granted"`` or ``"awaiting_approval"``."""
        self._check_advisor(case, staff_id)
        now = self._now()
        async with self._db.session() as s, s.begin():
            attempt = await self._reviewable(s, case, attempt_id, now)
            attempt.review, attempt.reviewed_by, attempt.reviewed_at = "confirmed", staff_id, now
            if case.service in FOUR_EYES:
                approval = Approval(
                    case_id=case.id,
                    attempt_id=attempt.id,
                    service=case.service,
                    requested_by=staff_id,
                    requested_at=now,
                    state="pending",
                )
                s.add(approval)
                await s.flush()
                await add_event(
                    s,
                    action="approval.requested",
                    outcome="ok",
                    actor_kind="staff",
                    actor_id=staff_id,
                    case_id=case.id,
                    detail={"attempt": attempt.public_id, "service": case.service},
                )
                return "awaiting_approval"
            grant = await self._issue(
                s, case.id, case.customer_id, case.service, attempt, staff_id, None, now
            )
            await add_event(
                s,
                action="grant.issued",
                outcome="ok",
                actor_kind="staff",
                actor_id=staff_id,
                case_id=case.id,
                grant_id=grant.id,
                detail={"attempt": attempt.public_id, "service": case.service},
            )
        return "granted"

    async def decline(self, case: CaseRef, attempt_id: str, staff_id: int, reason: str) -> None:
        """The advisor does not accept the attempt: a pass (e.g. the person is not the customer)
        or one that failed, was referred or was stopped (the service ends there, with the
        reason on record). Only the case's latest attempt, once it has ended."""
        self._check_advisor(case, staff_id)
        reason = reason.strip()
        if not 1 <= len(reason) <= MAX_REASON:
            raise GrantError("reason_required", f"give a reason of 1–{MAX_REASON} characters")
        now = self._now()
        async with self._db.session() as s, s.begin():
            attempt = await self._attempt_of(s, case, attempt_id)
            if attempt.review is not None:
                raise GrantError("already_reviewed", f"this attempt was {attempt.review} already")
            if attempt.state == "running":
                raise GrantError("not_finished", "the attempt is still running: wait for it")
            if await _newer_attempt(s, case.id, attempt.id):
                raise GrantError("not_latest", "a newer attempt exists: decide on that one")
            attempt.review, attempt.reviewed_by, attempt.reviewed_at = "declined", staff_id, now
            attempt.review_reason = reason
            await add_event(
                s,
                action="verification.declined",
                outcome="ok",
                actor_kind="staff",
                actor_id=staff_id,
                case_id=case.id,
                detail={"attempt": attempt.public_id, "reason": reason},
            )

    # ---- the supervisor ------------------------------------------------------------------

    async def decide(
        self, approval_id: int, staff_id: int, approve: bool, reason: str
    ) -> tuple[int, str]:
        """Approve (issue the grant) or reject a pending approval; returns the case's (id,
        public id). The supervisor must not be the advisor who asked."""
        reason = reason.strip()
        if len(reason) > MAX_REASON or (not approve and not reason):
            raise GrantError("reason_required", f"give a reason of 1–{MAX_REASON} characters")
        now = self._now()
        async with self._db.session() as s, s.begin():
            row = (
                await s.execute(
                    select(Approval, Case)
                    .join(Case, Case.id == Approval.case_id)
                    .where(Approval.id == approval_id)
                    .with_for_update()
                )
            ).first()
            if row is None:
                raise GrantError("not_found", f"no approval {approval_id}")
            approval, case = row
            if approval.state != "pending":
                raise GrantError("already_decided", f"this approval is {approval.state} already")
            if approval.requested_by == staff_id:
                raise GrantError("four_eyes", "a second member of staff must decide")
            if case.state != CaseState.IN_CALL:
                raise GrantError("bad_state", "the customer is no longer in the call")
            approval.state = "approved" if approve else "rejected"
            approval.decided_by, approval.decided_at = staff_id, now
            approval.reason = reason or None
            grant_id = None
            if approve:
                attempt = await s.get(VerificationAttempt, approval.attempt_id)
                if attempt is None:  # foreign key: cannot happen
                    raise GrantError("not_found", "the attempt is gone")
                grant = await self._issue(
                    s,
                    case.id,
                    case.customer_id,
                    case.service,
                    attempt,
                    approval.requested_by,
                    staff_id,
                    now,
                )
                grant_id = grant.id
            await add_event(
                s,
                action="approval.approved" if approve else "approval.rejected",
                outcome="ok",
                actor_kind="staff",
                actor_id=staff_id,
                case_id=case.id,
                grant_id=grant_id,
                detail={"approval": approval.id, "reason": reason},
            )
            return case.id, case.public_id

    async def pending(self) -> list[PendingItem]:
        """Approvals waiting for a supervisor, oldest first."""
        async with self._db.session() as s:
            rows = (
                await s.execute(
                    select(
                        Approval,
                        Case.public_id,
                        Customer.name,
                        Staff.display_name,
                        VerificationAttempt.public_id,
                    )
                    .join(Case, Case.id == Approval.case_id)
                    .join(Customer, Customer.id == Case.customer_id)
                    .join(Staff, Staff.id == Approval.requested_by)
                    .join(VerificationAttempt, VerificationAttempt.id == Approval.attempt_id)
                    .where(Approval.state == "pending", Case.state == CaseState.IN_CALL.value)
                    .order_by(Approval.id)
                )
            ).all()
        return [
            PendingItem(a.id, case, customer, a.service, advisor, _aware(a.requested_at), attempt)
            for a, case, customer, advisor, attempt in rows
        ]

    # ---- reading -------------------------------------------------------------------------

    async def live_grant(self, case_id: int) -> Live | None:
        """The unused, unrevoked, unexpired grant of the case, if any."""
        async with self._db.session() as s:
            grant = await _live(s, case_id, self._now())
        return None if grant is None else Live(grant.id, grant.public_id, grant.expires_at)

    async def latest(self, case_id: int) -> tuple[VerificationAttempt | None, Approval | None]:
        """The case's latest attempt and latest approval (for the service status)."""
        async with self._db.session() as s:
            attempt = (
                await s.execute(
                    select(VerificationAttempt)
                    .where(VerificationAttempt.case_id == case_id)
                    .order_by(VerificationAttempt.id.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
            approval = (
                await s.execute(
                    select(Approval)
                    .where(Approval.case_id == case_id)
                    .order_by(Approval.id.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
        return attempt, approval

    def attempt_is_fresh(self, attempt: VerificationAttempt, now: datetime | None = None) -> bool:
        """Whether a passed attempt may still be confirmed."""
        ended = attempt.ended_at
        moment = self._now() if now is None else now
        return ended is not None and moment - _aware(ended) <= ATTEMPT_MAX_AGE

    # ---- internals -----------------------------------------------------------------------

    @staticmethod
    def _check_advisor(case: CaseRef, staff_id: int) -> None:
        if case.state is not CaseState.IN_CALL or case.advisor_id != staff_id:
            raise GrantError("not_your_case", "only the advisor in the call can do this")
        if case.service not in NEEDS_GRANT:
            raise GrantError("no_authorisation_needed", f"{case.service} changes no record")

    async def _attempt_of(
        self, s: AsyncSession, case: CaseRef, attempt_id: str
    ) -> VerificationAttempt:
        attempt = (
            await s.execute(
                select(VerificationAttempt)
                .where(VerificationAttempt.public_id == attempt_id)
                .with_for_update()
            )
        ).scalar_one_or_none()
        if attempt is None or attempt.case_id != case.id:
            raise GrantError("not_found", "no such attempt in this case")
        if attempt.customer_id != case.customer_id:
            raise GrantError("wrong_customer", "the attempt is of another customer")
        return attempt

    async def _reviewable(
        self, s: AsyncSession, case: CaseRef, attempt_id: str, now: datetime
    ) -> VerificationAttempt:
        attempt = await self._attempt_of(s, case, attempt_id)
        if attempt.state != "passed":
            raise GrantError("not_passed", f"the attempt {attempt.state}: it cannot authorise")
        if attempt.review is not None:
            raise GrantError("already_reviewed", f"this attempt was {attempt.review} already")
        if not self.attempt_is_fresh(attempt, now):
            raise GrantError("attempt_too_old", "the verification is too old: verify again")
        newer = (
            await s.execute(
                select(VerificationAttempt.id)
                .where(
                    VerificationAttempt.case_id == case.id,
                    VerificationAttempt.id > attempt.id,
                )
                .limit(1)
            )
        ).scalar_one_or_none()
        if newer is not None:
            raise GrantError("not_latest", "a newer attempt exists: confirm that one")
        pending = (
            await s.execute(
                select(Approval.id).where(Approval.case_id == case.id, Approval.state == "pending")
            )
        ).first()
        if pending is not None:
            raise GrantError("awaiting_approval", "a supervisor is deciding already")
        return attempt

    async def _issue(
        self,
        s: AsyncSession,
        case_id: int,
        customer_id: int,
        service: str,
        attempt: VerificationAttempt,
        confirmed_by: int,
        approved_by: int | None,
        now: datetime,
    ) -> Grant:
        # One live grant per case: a new one revokes the old.
        await s.execute(
            update(Grant)
            .where(Grant.case_id == case_id, Grant.used_at.is_(None), Grant.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        grant = Grant(
            public_id=secrets.token_urlsafe(24),
            case_id=case_id,
            customer_id=customer_id,
            service=service,
            attempt_id=attempt.id,
            confirmed_by=confirmed_by,
            approved_by=approved_by,
            created_at=now,
            expires_at=now + GRANT_TTL,
        )
        s.add(grant)
        await s.flush()
        return grant


async def _newer_attempt(s: AsyncSession, case_id: int, attempt_id: int) -> bool:
    """Whether the case has an attempt started after ``attempt_id``."""
    newer = (
        await s.execute(
            select(VerificationAttempt.id)
            .where(VerificationAttempt.case_id == case_id, VerificationAttempt.id > attempt_id)
            .limit(1)
        )
    ).scalar_one_or_none()
    return newer is not None


async def _live(s: AsyncSession, case_id: int, now: datetime) -> Grant | None:
    grant = (
        await s.execute(
            select(Grant)
            .where(Grant.case_id == case_id, Grant.used_at.is_(None), Grant.revoked_at.is_(None))
            .order_by(Grant.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if grant is None or _aware(grant.expires_at) <= now:
        return None
    return grant
