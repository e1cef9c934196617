"""Live side of authorisation: the advisor's confirm / decline, the supervisor's decision, and
the ``service.state`` / ``approvals.pending`` pushes that keep every console current."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import select

from cases.errors import CaseError
from cases.grants import GrantDesk, GrantError
from cases.live import advisor_key, customer_key
from cases.operations import ServiceDesk, ServiceStatus
from cases.store import CaseRef, CaseStore
from signaling.hub import Hub
from signaling.messages import (
    ApprovalDecide,
    ApprovalsPending,
    ErrorCode,
    GrantConfirm,
    GrantDecline,
    PendingApproval,
    ProtocolError,
    ServiceState,
)
from store.db import Database
from store.models import VerificationAttempt

log = logging.getLogger(__name__)

MAX_REFRESHES = 64  # status refreshes in flight; more are dropped (the next change sends one)


class AuthoriseDesk:
    """Routes grant and approval messages and pushes the resulting states."""

    def __init__(
        self, hub: Hub, db: Database, cases: CaseStore, grants: GrantDesk, services: ServiceDesk
    ) -> None:
        self.hub = hub
        self._db = db
        self.cases = cases
        self.grants = grants
        self.services = services
        self._supervisors: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        services.set_notify(self.push_status)

    # ---- pushes --------------------------------------------------------------------------

    def push_status(self, case: CaseRef, status: ServiceStatus) -> None:
        """``service.state`` to the customer and to the advisor of the case."""
        msg = ServiceState(status=status.as_json())
        self.hub.send(customer_key(case.public_id), msg)
        if case.advisor_id is not None:
            self.hub.send(advisor_key(case.advisor_id), msg)

    def refresh(self, case_public_id: str) -> None:
        """Recompute and push a case's status in the background (after a call starts or a
        verification ends)."""
        if len(self._tasks) >= MAX_REFRESHES:
            log.warning("status refresh dropped: too many in flight")
            return
        task = asyncio.create_task(self._refresh(case_public_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refresh(self, case_public_id: str) -> None:
        try:
            await self.services.changed(await self.cases.get(case_public_id))
        except CaseError as err:
            log.info("no status refresh: %s", err)

    async def supervisor_connected(self, staff_id: int) -> None:
        """A supervisor's console opened: send the pending approvals."""
        self._supervisors.add(staff_id)
        self.hub.send(advisor_key(staff_id), await self._pending())

    def supervisor_disconnected(self, staff_id: int) -> None:
        """A supervisor's console closed."""
        self._supervisors.discard(staff_id)

    async def _broadcast_pending(self) -> None:
        if not self._supervisors:
            return
        msg = await self._pending()
        for staff_id in self._supervisors:
            self.hub.send(advisor_key(staff_id), msg)

    async def _pending(self) -> ApprovalsPending:
        items = [
            PendingApproval(
                id=p.id,
                case=p.case,
                customer=p.customer,
                service=p.service,
                advisor=p.advisor,
                requested_at=p.requested_at.isoformat(timespec="seconds"),
                attempt_id=p.attempt_id,
                best_frame_url=f"/staff/verification/{p.attempt_id}/best.jpg",
                reference_url=f"/staff/verification/{p.attempt_id}/reference.jpg",
            )
            for p in await self.grants.pending()
        ]
        return ApprovalsPending(items=items)

    # ---- messages ------------------------------------------------------------------------

    async def handle(
        self, staff_id: int, role: str, msg: GrantConfirm | GrantDecline | ApprovalDecide
    ) -> None:
        """Act on a staff message; raises :class:`ProtocolError` to refuse it."""
        try:
            match msg:
                case GrantConfirm(attempt_id=attempt_id):
                    case = await self._case_of_attempt(attempt_id, msg.type)
                    outcome = await self.grants.confirm(case, attempt_id, staff_id)
                    await self.services.changed(case)
                    if outcome == "awaiting_approval":
                        await self._broadcast_pending()
                case GrantDecline(attempt_id=attempt_id, reason=reason):
                    case = await self._case_of_attempt(attempt_id, msg.type)
                    await self.grants.decline(case, attempt_id, staff_id, reason)
                    await self.services.changed(case)
                case ApprovalDecide(approval_id=approval_id, approve=approve, reason=reason):
                    if role != "supervisor":
                        raise ProtocolError(
                            ErrorCode.FORBIDDEN, "only a supervisor decides approvals", msg.type
                        )
                    _, public_id = await self.grants.decide(approval_id, staff_id, approve, reason)
                    await self.services.changed(await self.cases.get(public_id))
                    await self._broadcast_pending()
        except GrantError as err:
            raise ProtocolError(
                ErrorCode.GRANT_REFUSED, f"{err.code}: {err.message}", msg.type
            ) from err

    async def _case_of_attempt(self, attempt_id: str, ref: str) -> CaseRef:
        async with self._db.session() as s:
            case_id = (
                await s.execute(
                    select(VerificationAttempt.case_id).where(
                        VerificationAttempt.public_id == attempt_id
                    )
                )
            ).scalar_one_or_none()
        if case_id is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, "no such verification attempt", ref)
        return await self.cases.get_by_id(case_id)

    async def shutdown(self) -> None:
        """Cancel refreshes in flight."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
