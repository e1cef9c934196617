"""Typed application keys: the shared state of the app, opened in ``cleanup_ctx``."""

from __future__ import annotations

import jinja2
from aiohttp import web

from banking.sql import SqlCoreBanking
from cases.authorise import AuthoriseDesk
from cases.intake import Intake
from cases.limits import AttemptLimiter
from cases.live import LiveDesk
from cases.operations import ServiceDesk
from cases.review import ReviewDesk
from cases.store import CaseStore
from media.call import CallManager
from signaling.hub import Hub
from store.blobs import BlobStore
from store.db import Database
from verification.service import EngineService
from web.i18n import Catalog
from web.sessions import Session, SessionStore, SessionWake
from web.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", Database)
BLOBS = web.AppKey("blobs", BlobStore)
BANKING = web.AppKey("banking", SqlCoreBanking)
CASES = web.AppKey("cases", CaseStore)
INTAKE = web.AppKey("intake", Intake)
LIMITER = web.AppKey("limiter", AttemptLimiter)
SESSIONS = web.AppKey("sessions", SessionStore)
SESSION_WAKE = web.AppKey("session_wake", SessionWake)
CALLS = web.AppKey("calls", CallManager)
HUB = web.AppKey("hub", Hub)
DESK = web.AppKey("desk", LiveDesk)
AUTHORISE = web.AppKey("authorise", AuthoriseDesk)
SERVICES = web.AppKey("services", ServiceDesk)
CATALOG = web.AppKey("catalog", Catalog)
ENGINE = web.AppKey("engine", EngineService)
JINJA = web.AppKey("jinja", jinja2.Environment)
REVIEW = web.AppKey("review", ReviewDesk)

# Per-request values (set by middlewares).
REQ_SESSION: web.RequestKey[Session | None] = web.RequestKey("session")
REQ_LANG = web.RequestKey("lang", str)
REQ_ELDERLY = web.RequestKey("elderly", bool)


def session_of(request: web.Request) -> Session | None:
    """The request's session, if it has one."""
    return request.get(REQ_SESSION)
