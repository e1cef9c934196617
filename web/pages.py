"""Customer and staff pages: translate requests into ``cases`` calls and render templates."""

from __future__ import annotations

import logging
import re
from urllib.parse import urlencode

from aiohttp import web
from yarl import URL

from banking.hashing import HashingBusy
from cases.consent import Consent, current_consent
from cases.errors import CaseNotFound, IdentificationFailed, NotAllowed, TooManyAttempts
from cases.limits import Limit
from cases.pages_access import CUSTOMER_SOCKET_STATES
from cases.services import SERVICES
from cases.states import CaseState
from cases.store import CaseRef
from web import params
from web.accounts import ROLES, StaffRef, get_staff, normalise_username, verify_staff
from web.forwarded import client_address
from web.i18n import SUPPORTED
from web.keys import (
    CASES,
    DB,
    DESK,
    INTAKE,
    LIMITER,
    REQ_ELDERLY,
    REQ_LANG,
    SESSION_WAKE,
    SESSIONS,
    SETTINGS,
    session_of,
)
from web.middleware import json_error
from web.params import BadParam
from web.render import render
from web.sessions import Session, clear_cookie, set_cookie
from web.ws import CONSOLE_ROLES

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

# Case states from which each customer page may be shown.
AFTER_CONSENT = CUSTOMER_SOCKET_STATES


def see_other(location: str) -> web.Response:
    """A 303 redirect returned (not raised) so cookies can be set on it."""
    return web.Response(status=303, headers={"Location": location})


MAX_NEXT = 2048


def plain_path(raw: object) -> URL | None:
    """``raw`` as a same-site path (``/a/b?c=d``), or None when a browser could read it as
    anything else: not starting with one ``/``, a scheme or a host, a backslash, whitespace or
    a control character (browsers drop a tab: ``/\t/evil.example`` is ``//evil.example``)."""
    if not isinstance(raw, str) or not 0 < len(raw) <= MAX_NEXT or "\\" in raw:
        return None
    if not raw.startswith("/") or raw.startswith("//") or not raw.isprintable():
        return None
    if any(c.isspace() for c in raw):
        return None
    try:
        url = URL(raw)
    except ValueError:
        return None
    if url.scheme or url.host is not None or url.fragment or not url.path.startswith("/"):
        return None
    return None if url.path.startswith("//") else url


def next_param(form: params.Params) -> str | None:
    """The ``next`` field (where to go after a login or a switch), read through the parameter
    layer; one it refuses is no target (the page goes to its default, as for a foreign one)."""
    try:
        return params.text(form, "next", max_length=MAX_NEXT)
    except BadParam:
        return None


def serves_page(router: web.UrlDispatcher, path: str) -> bool:
    """Whether a GET of ``path`` (decoded) is one of the router's pages (static files aside)."""
    for resource in router.resources():
        if not any(route.method in ("GET", "*") for route in resource):
            continue
        info = resource.get_info()
        if info.get("path") == path:
            return True
        pattern = info.get("pattern")
        if isinstance(pattern, re.Pattern) and pattern.fullmatch(path):
            return True
    return False


def safe_next(request: web.Request, raw: object, default: str = "/") -> str:
    """Where to go after a login or a switch: ``raw`` only when it is a plain path to one of
    our own pages (no open redirect), else ``default``."""
    url = plain_path(raw)
    if url is None or not serves_page(request.app.router, url.path_safe):
        return default
    return str(url)


async def start_session(
    request: web.Request,
    response: web.StreamResponse,
    kind: str,
    *,
    staff_id: int | None = None,
    case_id: int | None = None,
) -> Session:
    """Replace the request's session (if any) with a new one, and set its cookie."""
    store = request.app[SESSIONS]
    old = session_of(request)
    if old is not None:
        await store.destroy(old.id)
    token, session = await store.create(kind, staff_id=staff_id, case_id=case_id)
    set_cookie(response, request, token, request.app[SETTINGS].web.cookie_secure)
    return session


async def render_with_session(
    request: web.Request, template: str, *, status: int = 200, **ctx: object
) -> web.Response:
    """Render a form page, creating an anonymous session first when there is none."""
    if session_of(request) is None:
        holder = web.Response()
        session = await start_session(request, holder, "anon")
        response = render(request, template, status=status, **ctx, csrf_token=session.csrf_token)
        response.cookies.update(holder.cookies)
        return response
    return render(request, template, status=status, **ctx)


# ---- customer -------------------------------------------------------------------------------


def _service_list() -> list[dict[str, str]]:
    return [
        {"code": c, "title_key": f"service.{c}.title", "desc_key": f"service.{c}.desc"}
        for c in SERVICES
    ]


@routes.get("/")
async def service_page(request: web.Request) -> web.Response:
    """Step 1: choose a service."""
    return render(request, "service.html", services=_service_list())


@routes.get("/identify")
async def identify_page(request: web.Request) -> web.Response:
    """Step 2: name, ID number, card digits."""
    try:
        service = params.choice(request.query, "service", SERVICES)
    except BadParam:
        service = None
    if service is None:  # a stale or mistyped link: back to the list of services
        raise web.HTTPSeeOther("/")
    return await render_with_session(
        request, "identify.html", service=service, error=None, values={}
    )


IDENTIFY_FIELDS = {"name": 60, "id_number": 18, "card_last4": 4}


def _shown(form: params.Params, name: str, limit: int) -> str:
    """A field typed back into the form after an error: text only, cut to its length."""
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


@routes.post("/identify")
async def identify_submit(request: web.Request) -> web.StreamResponse:
    """Open a case when identification succeeds; one generic error otherwise."""
    form = await request.post()
    try:
        service = params.choice(form, "service", SERVICES)
    except BadParam:
        service = None
    if service is None:
        raise web.HTTPSeeOther("/")
    values = {"name": _shown(form, "name", 60), "card_last4": _shown(form, "card_last4", 4)}
    try:
        # One generic error for every field (it must not say which one was wrong).
        try:
            fields = {
                name: params.text(form, name, max_length=limit) or ""
                for name, limit in IDENTIFY_FIELDS.items()
            }
        except BadParam as err:
            raise IdentificationFailed("unreadable") from err
        if not all(fields.values()):
            raise IdentificationFailed("incomplete")
        opened = await request.app[INTAKE].identify(
            client_address(request),
            service,
            fields["name"],
            fields["id_number"].upper(),
            fields["card_last4"],
            lang=request[REQ_LANG],
            elderly=request[REQ_ELDERLY],
        )
    except TooManyAttempts as err:
        response = render(
            request,
            "identify.html",
            status=429,
            service=service,
            error="identify.error.rate_limited",
            values=values,
        )
        response.headers["Retry-After"] = str(err.retry_after)
        return response
    except IdentificationFailed:
        return render(
            request,
            "identify.html",
            status=400,
            service=service,
            error="identify.error.generic",
            values=values,
        )
    # The customer's earlier visits not yet in a call end here: one place per customer.
    request.app[DESK].superseded(opened.superseded)
    response = see_other("/consent")
    await start_session(request, response, "customer", case_id=opened.case.id)
    return response


async def customer_case(request: web.Request, allowed: frozenset[CaseState]) -> CaseRef:
    """The case of this customer session, when it is in one of ``allowed`` states."""
    session = session_of(request)
    if session is None or session.kind != "customer" or session.case_id is None:
        raise web.HTTPSeeOther("/")
    try:
        case = await request.app[CASES].get_by_id(session.case_id)
    except CaseNotFound as err:
        raise web.HTTPSeeOther("/") from err
    if case.state not in allowed:
        raise web.HTTPSeeOther(_page_for(case.state))
    return case


def _page_for(state: CaseState) -> str:
    if state is CaseState.IDENTIFIED:
        return "/consent"
    if state in AFTER_CONSENT:
        return "/call"
    return "/"


async def _consent(request: web.Request, lang: str) -> Consent:
    """The consent text to show in ``lang``: it names the settings' retention period."""
    days = request.app[SETTINGS].audit.retention_days
    return await current_consent(request.app[DB], lang, days)


async def _consent_page(
    request: web.Request, case: CaseRef, status: int, error: str | None
) -> web.Response:
    consent = await _consent(request, request[REQ_LANG])
    return render(
        request,
        "consent.html",
        status=status,
        service=case.service,
        consent_text=consent.text,
        consent_version=consent.version,
        error=error,
    )


@routes.get("/consent")
async def consent_page(request: web.Request) -> web.Response:
    """Step 3: the recording consent."""
    case = await customer_case(request, frozenset({CaseState.IDENTIFIED}))
    return await _consent_page(request, case, 200, None)


ACCEPTED = ("on", "yes", "1", "true")  # what a checked box may send


@routes.post("/consent")
async def consent_submit(request: web.Request) -> web.StreamResponse:
    """Record the consent, with the version and hash of the text shown."""
    case = await customer_case(request, frozenset({CaseState.IDENTIFIED}))
    form = await request.post()
    try:
        accepted = params.choice(form, "accept", ACCEPTED)
        shown = params.text(form, "consent_version", max_length=64)
    except BadParam:
        accepted = shown = None
    if accepted is None:
        return await _consent_page(request, case, 400, "consent.error.required")
    consent = await _consent(request, request[REQ_LANG])  # the language it was shown in
    if shown and shown != consent.version:  # the text changed since the page was shown
        return await _consent_page(request, case, 400, "consent.error.changed")
    try:
        await request.app[INTAKE].consent(case.public_id, consent)
    except NotAllowed as err:
        raise web.HTTPSeeOther(_page_for(case.state)) from err
    raise web.HTTPSeeOther("/device-check")


DEVICE_RESULTS = {
    "camera": ("ok", "fail"),
    "mic": ("ok", "silent", "fail"),
    "network": ("ok", "slow", "down"),
}


@routes.get("/device-check")
async def device_check_page(request: web.Request) -> web.Response:
    """Step 4: camera, microphone and network check (``?reason=needed``: sent back here from
    the call page, which needs a passed check)."""
    case = await customer_case(request, AFTER_CONSENT)
    reason = (
        "device.error.check_first" if params.choice(request.query, "reason", ("needed",)) else None
    )
    return await render_with_session(
        request, "device_check.html", service=case.service, error=reason
    )


@routes.post("/device-check")
async def device_check_submit(request: web.Request) -> web.StreamResponse:
    """The page's findings: kept on the case; on to the call when the camera works, else the
    check again with the reason (an advisor cannot serve a customer they cannot see)."""
    case = await customer_case(request, AFTER_CONSENT)
    form = await request.post()
    try:
        result = {
            name: params.choice(form, name, allowed) or "fail"
            for name, allowed in DEVICE_RESULTS.items()
        }
    except BadParam as err:
        return json_error(400, err.code, err.message)
    if not await request.app[CASES].record_device_check(case.id, result):
        return await render_with_session(
            request,
            "device_check.html",
            status=400,
            service=case.service,
            error="device.error.camera_needed",
        )
    raise web.HTTPSeeOther("/call")


@routes.get("/call")
async def call_page(request: web.Request) -> web.Response:
    """Step 5: the waiting room and the call. A customer not yet queued whose device check has
    not passed is sent back to it, with the reason."""
    case = await customer_case(request, AFTER_CONSENT)
    if case.state is CaseState.CONSENTED and not await request.app[CASES].device_check_passed(
        case.id
    ):
        raise web.HTTPSeeOther("/device-check?reason=needed")
    return render(
        request,
        "call.html",
        service=case.service,
        config={"caseId": case.public_id, "service": case.service},
    )


@routes.get("/lang/{code}")
async def switch_language(request: web.Request) -> web.StreamResponse:
    """Remember the chosen language in a cookie."""
    code = request.match_info["code"]
    if code not in SUPPORTED:
        raise web.HTTPNotFound(text=f"unsupported language {code!r}")
    response = see_other(safe_next(request, next_param(request.query)))
    response.set_cookie("lang", code, max_age=365 * 86400, samesite="Lax", path="/")
    return response


@routes.get("/prefs/elderly")
async def switch_elderly(request: web.Request) -> web.StreamResponse:
    """Turn elderly mode (large text, high contrast, big buttons) on or off."""
    on = params.choice(request.query, "on", ("0", "1")) == "1"
    response = see_other(safe_next(request, next_param(request.query)))
    response.set_cookie(
        "elderly", "1" if on else "0", max_age=365 * 86400, samesite="Lax", path="/"
    )
    return response


# ---- staff ----------------------------------------------------------------------------------


# Where each role lands after logging in (unless the login page was asked for another page).
STAFF_HOME = {"supervisor": "/staff/approvals", "admin": "/admin/outbox", "auditor": "/audit"}


@routes.get("/staff/login")
async def login_page(request: web.Request) -> web.Response:
    """Staff login form."""
    target = safe_next(request, next_param(request.query), "")
    return await render_with_session(request, "staff_login.html", error=None, next_path=target)


@routes.post("/staff/login")
async def login_submit(request: web.Request) -> web.StreamResponse:
    """Check username + password (argon2, rate-limited) and start a staff session."""
    form = await request.post()
    try:  # a user name the accounts could not hold is no account: the generic refusal
        username = params.text(form, "username", max_length=64) or ""
    except BadParam:
        username = ""
    raw_password = form.get("password", "")
    password = raw_password[:256] if isinstance(raw_password, str) else ""
    limiter, cfg = request.app[LIMITER], request.app[SETTINGS].web
    window = cfg.identify_window_seconds
    try:
        ticket = await limiter.begin(
            [
                Limit("login-address", client_address(request), cfg.identify_attempts, window),
                Limit("login-user", normalise_username(username), cfg.login_user_attempts, window),
            ]
        )
    except TooManyAttempts as err:
        response = render(request, "staff_login.html", status=429, error="login.error.rate_limited")
        response.headers["Retry-After"] = str(err.retry_after)
        return response
    try:
        staff = await verify_staff(request.app[DB], username, password) if username else None
    except HashingBusy:
        await limiter.succeeded(ticket)  # not a guess: the server was too busy to check it
        response = render(request, "staff_login.html", status=503, error="login.error.busy")
        response.headers["Retry-After"] = "5"
        return response
    if staff is None:
        log.info("staff login failed")
        return render(
            request,
            "staff_login.html",
            status=401,
            error="login.error.invalid",
            next_path=safe_next(request, next_param(form), ""),
        )
    await limiter.succeeded(ticket)
    response = see_other(
        safe_next(request, next_param(form), STAFF_HOME.get(staff.role, "/advisor"))
    )
    await start_session(request, response, "staff", staff_id=staff.id)
    log.info("staff login", extra={"staff_id": staff.id})
    return response


@routes.post("/staff/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    """End the staff session."""
    session = session_of(request)
    if session is not None:
        await request.app[SESSIONS].destroy(session.id)
        request.app[SESSION_WAKE].ended(session.id)  # its sockets close now
    response = see_other("/staff/login")
    clear_cookie(response)
    return response


async def current_staff(request: web.Request, roles: frozenset[str]) -> StaffRef:
    """The logged-in staff member, when their role is one of ``roles``."""
    session = session_of(request)
    if session is None or session.kind != "staff" or session.staff_id is None:
        raise web.HTTPSeeOther("/staff/login?" + urlencode({"next": request.path}))
    staff = await get_staff(request.app[DB], session.staff_id)
    if staff is None:
        raise web.HTTPSeeOther("/staff/login")
    if staff.role not in roles:
        raise web.HTTPForbidden(text=f"the role {staff.role!r} has no access to this page")
    return staff


@routes.get("/staff")
async def staff_home(request: web.Request) -> web.StreamResponse:
    """The signed-in staff member's own start page (the staff pages' logo links here)."""
    staff = await current_staff(request, frozenset(ROLES))
    raise web.HTTPSeeOther(STAFF_HOME.get(staff.role, "/advisor"))


@routes.get("/advisor")
async def advisor_console(request: web.Request) -> web.Response:
    """The advisor console: queue, call, chat."""
    staff = await current_staff(request, CONSOLE_ROLES)
    return render(
        request,
        "advisor.html",
        staff_name=staff.display_name,
        config={"staffName": staff.display_name},
    )


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Liveness probe for the proxy and the tests."""
    return web.json_response({"status": "ok"})
