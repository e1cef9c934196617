"""The customer's service requests (``/api/case/...``), the supervisor's approvals page and the
SMS outbox page. Translates requests and errors only; the rules live in ``cases`` and
``banking`` (docs/services.md)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from banking.errors import OperationRefused
from cases.errors import CaseNotFound
from cases.operations import ServiceRefused, ServiceStatus
from cases.states import CaseState
from cases.store import CaseRef
from web.keys import BANKING, CASES, SERVICES, session_of
from web.pages import current_staff
from web.render import render

log = logging.getLogger(__name__)

routes = web.RouteTableDef()
MAX_BODY = 2048
OUTBOX_ROLES = frozenset({"admin", "supervisor"})
APPROVER_ROLES = frozenset({"supervisor"})
OPEN_STATES = frozenset(
    {CaseState.IDENTIFIED, CaseState.CONSENTED, CaseState.QUEUED, CaseState.IN_CALL}
)
# Refusals that are about the moment, not the input.
_CONFLICTS = frozenset({"grant_refused", "wrong_service", "bad_state", "no_lost_card", "no_ukey"})


def _error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    body: dict[str, Any] = {"error": code, "message": message, "field": None, "reason": None}
    body["tries_left"] = None
    body.update(extra)
    return web.json_response(body, status=status)


async def _case(request: web.Request) -> CaseRef:
    session = session_of(request)
    if session is None or session.kind != "customer" or session.case_id is None:
        raise web.HTTPUnauthorized(text="identify first")
    try:
        case = await request.app[CASES].get_by_id(session.case_id)
    except CaseNotFound as err:
        raise web.HTTPUnauthorized(text="case not found") from err
    if case.state not in OPEN_STATES:
        raise web.HTTPConflict(text=f'the case is "{case.state}"')
    return case


async def _fields(request: web.Request, *names: str) -> list[str]:
    """String fields of the JSON body (each required, at most 64 characters)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
    try:
        body = await request.json()
    except ValueError as err:
        raise _Bad("bad_json", "the body must be a JSON object") from err
    if not isinstance(body, dict):
        raise _Bad("bad_json", "the body must be a JSON object")
    values = []
    for name in names:
        value = body.get(name)
        if not isinstance(value, str) or not value or len(value) > 64:
            raise _Bad("missing_field", f"{name} is required (text, at most 64 characters)", name)
        values.append(value)
    return values


class _Bad(Exception):
    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.field = code, message, field


Action = Callable[[web.Request, CaseRef], Awaitable[ServiceStatus]]


async def _run(request: web.Request, action: Action) -> web.Response:
    try:
        case = await _case(request)
        status = await action(request, case)
    except _Bad as err:
        return _error(400, err.code, err.message, field=err.field)
    except ServiceRefused as err:
        return _error(409, err.code, err.message)
    except OperationRefused as err:
        detail = {k: v for k, v in err.detail.items() if k in ("reason", "tries_left")}
        status_code = 409 if err.code in _CONFLICTS else 422
        # Never the value: only the code, the field and the reason (docs/services.md).
        log.info("service request refused: %s", err.code, extra={"field": err.field})
        return _error(status_code, err.code, err.message, field=err.field, **detail)
    return web.json_response(status.as_json())


@routes.get("/api/case/service")
async def service_status(request: web.Request) -> web.Response:
    """Where the case's service stands."""

    async def read(_: web.Request, case: CaseRef) -> ServiceStatus:
        return await request.app[SERVICES].status(case)

    return await _run(request, read)


@routes.post("/api/case/loss-report")
async def loss_report(request: web.Request) -> web.Response:
    """Block the customer's card now (no verification needed)."""

    async def act(_: web.Request, case: CaseRef) -> ServiceStatus:
        return await request.app[SERVICES].report_loss(case)

    return await _run(request, act)


@routes.post("/api/case/reissue")
async def reissue(request: web.Request) -> web.Response:
    """Order a new card (after verification and the advisor's confirmation)."""

    async def act(_: web.Request, case: CaseRef) -> ServiceStatus:
        return await request.app[SERVICES].reissue(case)

    return await _run(request, act)


@routes.post("/api/case/pin")
async def change_pin(request: web.Request) -> web.Response:
    """Set a new PIN: ``{"pin", "confirm"}``."""

    async def act(req: web.Request, case: CaseRef) -> ServiceStatus:
        pin, confirm = await _fields(req, "pin", "confirm")
        return await request.app[SERVICES].change_pin(case, pin, confirm)

    return await _run(request, act)


@routes.post("/api/case/phone")
async def start_phone(request: web.Request) -> web.Response:
    """Send a one-time code to the new number: ``{"phone"}``."""

    async def act(req: web.Request, case: CaseRef) -> ServiceStatus:
        (phone,) = await _fields(req, "phone")
        return await request.app[SERVICES].start_phone(case, phone)

    return await _run(request, act)


@routes.post("/api/case/phone/confirm")
async def confirm_phone(request: web.Request) -> web.Response:
    """Check the one-time code: ``{"code"}``."""

    async def act(req: web.Request, case: CaseRef) -> ServiceStatus:
        (code,) = await _fields(req, "code")
        return await request.app[SERVICES].confirm_phone(case, code)

    return await _run(request, act)


@routes.post("/api/case/ukey")
async def reset_ukey(request: web.Request) -> web.Response:
    """Set the U-key's new password: ``{"password", "confirm"}``."""

    async def act(req: web.Request, case: CaseRef) -> ServiceStatus:
        password, confirm = await _fields(req, "password", "confirm")
        return await request.app[SERVICES].reset_ukey(case, password, confirm)

    return await _run(request, act)


@routes.get("/staff/approvals")
async def approvals_page(request: web.Request) -> web.Response:
    """The supervisor's approvals console (pending items arrive over the WebSocket)."""
    staff = await current_staff(request, APPROVER_ROLES)
    return render(
        request,
        "approvals.html",
        staff_name=staff.display_name,
        config={"staffName": staff.display_name},
    )


@routes.get("/admin/outbox")
async def outbox_page(request: web.Request) -> web.Response:
    """The SMS outbox (the stand-in for the SMS gateway), newest first."""
    await current_staff(request, OUTBOX_ROLES)
    notifications = await request.app[BANKING].notifications(limit=200)
    return render(request, "outbox.html", notifications=notifications)
