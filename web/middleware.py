"""Middlewares: errors as JSON, security headers, sessions, CSRF, language and elderly mode."""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from web.forwarded import is_secure
from web.i18n import negotiate
from web.keys import REQ_ELDERLY, REQ_LANG, REQ_SESSION, SESSIONS, SETTINGS, session_of
from web.params import BadParam
from web.render import render
from web.sessions import COOKIE

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob: mediastream:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(self), microphone=(self), geolocation=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def json_error(status: int, code: str, message: str) -> web.Response:
    """A 4xx/5xx answer whose JSON body names the problem."""
    return web.json_response({"error": code, "message": message}, status=status)


def wants_json(request: web.Request) -> bool:
    """API and WebSocket paths, and clients that ask for JSON, get JSON errors."""
    accept = request.headers.get("Accept", "")
    return request.path.startswith(("/api/", "/ws")) or "application/json" in accept


async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """Security headers on every response, static files and WebSocket upgrades included."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if is_secure(request):
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    if session_of(request) is not None:
        response.headers.setdefault("Cache-Control", "no-store")


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn HTTP errors into JSON bodies where JSON is expected; a bad parameter into 400
    naming it; hide internal errors."""
    try:
        return await handler(request)
    except BadParam as err:
        if wants_json(request):
            return web.json_response(err.as_json(), status=400)
        raise web.HTTPBadRequest(text=str(err)) from err
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if wants_json(request):
            if exc.content_type == "application/json":
                raise
            return json_error(exc.status, exc.reason.lower().replace(" ", "_"), exc.text or "")
        kind = ERROR_PAGES.get(exc.status)
        if kind is None or exc.content_type in ("text/html", "application/json"):
            raise  # a page of its own, or a refusal its route answers in JSON (CSRF, media)
        return error_page(request, exc.status, kind)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        if wants_json(request):
            return json_error(500, "internal", "internal error")
        return error_page(request, 500, "500")


# Statuses a browser is shown a page for (in its language, with a way back), by the page's text.
ERROR_PAGES = {
    400: "400",
    413: "400",
    414: "400",
    431: "400",
    401: "403",
    403: "403",
    404: "404",
    405: "404",
    410: "404",
    500: "500",
    502: "500",
    503: "500",
}


def error_page(request: web.Request, status: int, kind: str) -> web.Response:
    """The error page: what happened in the page's language and a link back (staff to their
    pages, everyone else to the start)."""
    if REQ_LANG not in request:  # refused before the sessions middleware ran (a static file)
        request[REQ_LANG] = negotiate(
            request.headers.get("Accept-Language"),
            request.cookies.get("lang"),
            request.app[SETTINGS].web.default_lang,
        )
        request[REQ_ELDERLY] = request.cookies.get("elderly") == "1"
        request[REQ_SESSION] = None
    session = session_of(request)
    staff = (session is not None and session.kind == "staff") or request.path.startswith(
        ("/staff", "/advisor", "/audit", "/admin")
    )
    back = "/staff/login" if staff and session is None else ("/staff" if staff else "/")
    return render(
        request,
        "error.html",
        status=status,
        kind=kind,
        code=status,
        staff_page=staff,
        back=back,
    )


# The file system's limits on a name and a path (Linux): a longer one cannot be a file of ours.
NAME_MAX = 255
PATH_MAX = 4096


def static_name(filename: str) -> tuple[str, ...] | None:
    """The segments of a static file's name, or None when it cannot name a file under the
    folder (empty, ``.``/``..`` segments, NUL or a backslash, a name the file system refuses)."""
    parts = tuple(filename.split("/"))
    if len(filename.encode("utf-8", "surrogatepass")) > PATH_MAX or "\\" in filename:
        return None
    for part in parts:
        if part in ("", ".", "..") or "\0" in part:
            return None
        if len(part.encode("utf-8", "surrogatepass")) > NAME_MAX:
            return None
    return parts


def _is_file(folder: Path, parts: tuple[str, ...]) -> bool:
    try:
        return folder.joinpath(*parts).is_file()
    except (OSError, ValueError):
        return False


@web.middleware
async def static_files(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Static routes answer a file or 404, never 500: a name the file system refuses (a
    segment over 255 bytes was an uncaught OSError) and a missing file (aiohttp's own 404 has
    no body) raise HTTPNotFound here, which ``errors`` turns into JSON when JSON is asked for."""
    resource = request.match_info.route.resource
    if not isinstance(resource, web.StaticResource):
        return await handler(request)
    parts = static_name(request.match_info.get("filename", ""))
    folder = Path(os.fspath(resource.get_info()["directory"]))
    if parts is None or not await asyncio.to_thread(_is_file, folder, parts):
        raise web.HTTPNotFound(text="no such file")
    try:
        return await handler(request)
    except OSError as err:
        raise web.HTTPNotFound(text="no such file") from err


@web.middleware
async def sessions(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Load the session named by the cookie, and the language and elderly-mode choice."""
    token = request.cookies.get(COOKIE, "")
    request[REQ_SESSION] = await request.app[SESSIONS].load(token) if token else None
    settings = request.app[SETTINGS]
    request[REQ_LANG] = negotiate(
        request.headers.get("Accept-Language"),
        request.cookies.get("lang"),
        settings.web.default_lang,
    )
    request[REQ_ELDERLY] = request.cookies.get("elderly") == "1"
    return await handler(request)


async def _submitted_token(request: web.Request) -> str:
    header = request.headers.get("X-CSRF-Token")
    if header:
        return header
    if request.content_type in {"application/x-www-form-urlencoded", "multipart/form-data"}:
        form = await request.post()
        value = form.get("csrf_token")
        return value if isinstance(value, str) else ""
    return ""


@web.middleware
async def csrf(request: web.Request, handler: Handler) -> web.StreamResponse:
    """State-changing requests must carry the session's CSRF token."""
    if request.method in UNSAFE:
        session = session_of(request)
        if session is None:
            raise_csrf("no session: reload the page and try again")
        token = await _submitted_token(request)
        if not token:
            raise_csrf("missing CSRF token")
        if session is not None and not hmac.compare_digest(token, session.csrf_token):
            raise_csrf("invalid CSRF token")
    return await handler(request)


def raise_csrf(message: str) -> None:
    """Refuse a request for CSRF reasons (403 with a JSON body)."""
    raise web.HTTPForbidden(
        text=f'{{"error": "csrf", "message": "{message}"}}', content_type="application/json"
    )
