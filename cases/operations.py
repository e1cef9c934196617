"""The four services run for a case: where each stands (:class:`ServiceStatus`) and the
customer's requests, handed to ``banking`` with the case's live grant.

The customer never holds the grant: the server looks up the live grant of the customer's own
case. Refusals come from ``banking`` (``OperationRefused`` with a code) or from here
(:class:`ServiceRefused`: wrong service, wrong state); either way nothing changed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from banking.core import CoreBanking
from banking.errors import OperationRefused
from cases.errors import Refused
from cases.grants import GrantDesk
from cases.states import CaseState
from cases.store import CaseRef
from store.db import Database
from store.models import Case, PhoneOtp

log = logging.getLogger(__name__)

# Where a card can be blocked from: any open case (before and without a verification).
LOSS_REPORT_STATES = frozenset(
    {CaseState.IDENTIFIED, CaseState.CONSENTED, CaseState.QUEUED, CaseState.IN_CALL}
)


class ServiceRefused(Refused):
    """A request that does not fit the case (another service, the wrong moment)."""


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """Where the case's service stands (docs/services.md); only masked values."""

    service: str
    step: str
    attempt_id: str | None = None
    approval: Mapping[str, Any] | None = None
    grant_expires_at: str | None = None
    declined_reason: str | None = None
    blocked: Mapping[str, Any] | None = None
    receipt: Mapping[str, Any] | None = None
    # The customer's records as staff may see them (masked), incl. the cooling-off flag.
    account: Mapping[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        """The JSON object the pages read."""
        return asdict(self)


Notify = Callable[[CaseRef, ServiceStatus], None]


def _iso(value: datetime) -> str:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.isoformat(timespec="seconds")


class ServiceDesk:
    """Runs the customer's requests and tells both sides of the call what changed."""

    def __init__(self, db: Database, grants: GrantDesk, banking: CoreBanking) -> None:
        self._db = db
        self.grants = grants
        self._banking = banking
        self._notify: Notify | None = None

    def set_notify(self, notify: Notify) -> None:
        """Where status changes go (the live desk, once it exists)."""
        self._notify = notify

    # ---- status --------------------------------------------------------------------------

    async def status(self, case: CaseRef) -> ServiceStatus:
        """The service's current step for ``case``."""
        outcome = await self._outcome(case.id)
        blocked = outcome.get("blocked")
        receipt = outcome.get("receipt")
        account = await self._account(case.customer_id)
        base = ServiceStatus(
            case.service, "none", blocked=blocked, receipt=receipt, account=account
        )
        if case.service == "consultation":
            return base
        if receipt is not None:
            return _with(base, step="done")
        if case.service == "card_loss" and blocked is None:
            return _with(base, step="block")
        attempt, approval = await self.grants.latest(case.id)
        info = None
        if attempt is not None and approval is not None and approval.attempt_id == attempt.id:
            info = {"id": approval.id, "state": approval.state, "reason": approval.reason}
            base = _with(base, approval=info)
        live = await self.grants.live_grant(case.id)
        if live is not None:
            step = "code" if await self._pending_code(live.id) else "ready"
            return _with(base, step=step, grant_expires_at=_iso(live.expires_at))
        if attempt is not None and approval is not None and info is not None:
            if approval.state == "pending":
                return _with(base, step="approval", attempt_id=attempt.public_id, approval=info)
            if approval.state == "rejected":
                return _with(base, step="rejected", attempt_id=attempt.public_id, approval=info)
        if attempt is not None and attempt.review == "declined":
            return _with(
                base,
                step="declined",
                attempt_id=attempt.public_id,
                declined_reason=attempt.review_reason,
            )
        if (
            attempt is not None
            and attempt.state == "passed"
            and attempt.review is None
            and self.grants.attempt_is_fresh(attempt)
        ):
            return _with(base, step="confirm", attempt_id=attempt.public_id)
        return _with(base, step="verify")

    async def changed(self, case: CaseRef) -> ServiceStatus:
        """Recompute the status and tell both sides."""
        status = await self.status(case)
        if self._notify is not None:
            self._notify(case, status)
        return status

    # ---- the customer's requests ---------------------------------------------------------

    async def report_loss(self, case: CaseRef) -> ServiceStatus:
        """Block the customer's cards at once (no grant, no verification needed)."""
        self._expect(case, "card_loss", LOSS_REPORT_STATES)
        report = await self._banking.report_loss(customer_id=case.customer_id, case_id=case.id)
        blocked = {
            "cards": list(report.cards_blocked),
            "already_blocked": report.already_blocked,
            "at": _iso(report.at),
        }
        await self._save(case.id, "blocked", blocked)
        return await self.changed(case)

    async def reissue(self, case: CaseRef) -> ServiceStatus:
        """Order a new card for the blocked one (needs the grant)."""
        self._expect(case, "card_loss")
        result = await self._banking.order_reissue(
            grant=await self._grant(case), case_id=case.id, customer_id=case.customer_id
        )
        details = {"new_card": result.new_card_masked, "replaces": result.replaces_card_masked}
        return await self._done(case, "reissue_ordered", details, result.at)

    async def change_pin(self, case: CaseRef, pin: str, confirm: str) -> ServiceStatus:
        """Set the card's new PIN (typed by the customer; hashed by banking)."""
        self._expect(case, "pin_change")
        result = await self._banking.change_pin(
            grant=await self._grant(case),
            case_id=case.id,
            customer_id=case.customer_id,
            pin=pin,
            confirm=confirm,
        )
        return await self._done(case, "pin_changed", {"card": result.card_masked}, result.at)

    async def start_phone(self, case: CaseRef, phone: str) -> ServiceStatus:
        """Send a one-time code to the new number."""
        self._expect(case, "phone_change")
        await self._banking.start_phone_change(
            grant=await self._grant(case),
            case_id=case.id,
            customer_id=case.customer_id,
            new_phone=phone,
        )
        return await self.changed(case)

    async def confirm_phone(self, case: CaseRef, code: str) -> ServiceStatus:
        """Check the code; on success the reserved number changes."""
        self._expect(case, "phone_change")
        try:
            result = await self._banking.confirm_phone_change(
                grant=await self._grant(case),
                case_id=case.id,
                customer_id=case.customer_id,
                code=code,
            )
        except OperationRefused:
            # A third wrong code revokes the grant: both sides must see the step change.
            await self.changed(case)
            raise
        details = {
            "phone": result.new_phone_masked,
            "cooling_off_until": _iso(result.cooling_off_until),
        }
        return await self._done(case, "phone_changed", details, result.at)

    async def reset_ukey(self, case: CaseRef, password: str, confirm: str) -> ServiceStatus:
        """Set the U-key's new password and unlock it."""
        self._expect(case, "ukey_reset")
        result = await self._banking.reset_ukey(
            grant=await self._grant(case),
            case_id=case.id,
            customer_id=case.customer_id,
            password=password,
            confirm=confirm,
        )
        return await self._done(case, "ukey_reset", {"ukey": result.serial}, result.at)

    # ---- internals -----------------------------------------------------------------------

    @staticmethod
    def _expect(
        case: CaseRef, service: str, states: frozenset[CaseState] = frozenset({CaseState.IN_CALL})
    ) -> None:
        if case.service != service:
            raise ServiceRefused("wrong_service", f"this case is for {case.service}")
        if case.state not in states:
            raise ServiceRefused("bad_state", f'not possible while the case is "{case.state}"')

    async def _grant(self, case: CaseRef) -> str:
        live = await self.grants.live_grant(case.id)
        # No live grant: banking refuses "" as no_grant and writes the refusal to the audit log.
        return "" if live is None else live.public_id

    async def _done(
        self, case: CaseRef, what: str, details: Mapping[str, str], at: datetime
    ) -> ServiceStatus:
        receipt = {
            "case": case.public_id,
            "service": case.service,
            "what": f"service.done.{what}",
            "details": dict(details),
            "at": _iso(at),
        }
        await self._save(case.id, "receipt", receipt)
        return await self.changed(case)

    async def _account(self, customer_id: int) -> dict[str, Any]:
        accounts = await self._banking.accounts(customer_id)
        cooling = accounts.cooling_off_until
        return {
            "cards": [{"number": c.number_masked, "status": c.status} for c in accounts.cards],
            "phone": accounts.phone_masked,
            "cooling_off_until": None if cooling is None else _iso(cooling),
            "ukeys": [{"serial": u.serial, "status": u.status} for u in accounts.ukeys],
        }

    async def _outcome(self, case_id: int) -> dict[str, Any]:
        async with self._db.session() as s:
            raw = (await s.execute(select(Case.outcome).where(Case.id == case_id))).scalar()
        return {} if not raw else dict(json.loads(raw))

    async def _save(self, case_id: int, key: str, value: Mapping[str, Any]) -> None:
        async with self._db.session() as s, s.begin():
            case = (
                await s.execute(select(Case).where(Case.id == case_id).with_for_update())
            ).scalar_one()
            outcome = json.loads(case.outcome) if case.outcome else {}
            outcome[key] = value
            case.outcome = json.dumps(outcome, sort_keys=True)

    async def _pending_code(self, grant_id: int) -> bool:
        async with self._db.session() as s:
            found = (
                await s.execute(
                    select(PhoneOtp.id).where(
                        PhoneOtp.grant_id == grant_id, PhoneOtp.state == "pending"
                    )
                )
            ).first()
        return found is not None


def _with(status: ServiceStatus, **changes: Any) -> ServiceStatus:
    return ServiceStatus(**{**asdict(status), **changes})
