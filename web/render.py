"""Rendering jinja2 pages with the context every template expects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from web.keys import CATALOG, JINJA, REQ_ELDERLY, REQ_LANG, session_of

STATIC_PREFIX = "/static/"


def make_environment() -> jinja2.Environment:
    """The jinja2 environment over ``web/templates`` (autoescape on)."""
    folder = Path(__file__).parent / "templates"
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        autoescape=jinja2.select_autoescape(["html"]),
        enable_async=False,
    )


def compile_all(env: jinja2.Environment) -> int:
    """Load (compile) every template once; CPU work, so call it in a thread at start-up."""
    names = env.list_templates(extensions=["html"])
    for name in names:
        env.get_template(name)
    return len(names)


def static_url(name: str) -> str:
    """URL of a file under ``web/static``."""
    return STATIC_PREFIX + name.lstrip("/")


def base_context(request: web.Request) -> dict[str, Any]:
    """What every template gets: translation, language, elderly mode, CSRF token, paths, and
    the texts for the page's scripts (a staff session's pages also get the staff-only ones)."""
    catalog = request.app[CATALOG]
    lang: str = request[REQ_LANG]
    session = session_of(request)
    staff = session is not None and session.kind == "staff"
    return {
        "t": catalog.translator(lang),
        "lang": lang,
        "elderly": bool(request[REQ_ELDERLY]),
        "csrf_token": session.csrf_token if session else "",
        "path": request.path_qs,
        "static": static_url,
        "messages": catalog.for_scripts(lang, staff=staff),
        "config": {},
    }


def render(
    request: web.Request, template: str, *, status: int = 200, **context: Any
) -> web.Response:
    """Render ``template`` with the base context plus ``context``."""
    ctx = base_context(request)
    ctx.update(context)
    html = request.app[JINJA].get_template(template).render(ctx)
    return web.Response(text=html, status=status, content_type="text/html")
