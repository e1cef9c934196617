"""The aiohttp application factory: the one composition root."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from functools import partial
from pathlib import Path

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from banking.sql import SqlCoreBanking
from cases.attempts import AttemptStore
from cases.authorise import AuthoriseDesk
from cases.cobrowse_desk import AuditedRecords, CobrowseDesk
from cases.consent import ensure_consent_texts
from cases.grants import GrantDesk
from cases.intake import Intake, IntakeLimits
from cases.limits import AttemptLimiter
from cases.live import LiveDesk
from cases.operations import ServiceDesk
from cases.recordings import RecordingSink
from cases.review import ReviewDesk
from cases.store import CaseStore
from cases.verify import VerifyDesk
from media.call import CallManager
from media.recorder import recover_spool
from signaling.hub import Hub
from store.checkpoints import checkpoint_every, write_checkpoint
from store.db import open_database
from store.s3 import open_blob_store
from store.signing import signing_key
from verification.config import build_engine
from verification.policy import load_policy
from verification.service import EngineService
from web import audit, audit_export, evidence, forwarded, middleware, pages, services_api
from web.i18n import Catalog
from web.keys import (
    AUTHORISE,
    BANKING,
    BLOBS,
    CALLS,
    CASES,
    CATALOG,
    DB,
    DESK,
    ENGINE,
    HUB,
    INTAKE,
    JINJA,
    LIMITER,
    REVIEW,
    SERVICES,
    SESSION_WAKE,
    SESSIONS,
    SETTINGS,
)
from web.render import STATIC_PREFIX, compile_all, make_environment
from web.sessions import SessionStore, SessionWake
from web.settings import Settings, WebConfig, check_supported
from web.ws import websocket

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
# rrweb (npm, installed by `make npm-deps`) for co-browsing: served from node_modules as is.
RRWEB_DIR = Path(__file__).resolve().parents[1] / "node_modules" / "rrweb" / "umd"
RRWEB_PREFIX = "/vendor/rrweb/"


def intake_limits(cfg: WebConfig) -> IntakeLimits:
    """The identification limits of the settings."""
    return IntakeLimits(
        per_address=cfg.identify_attempts,
        per_id_number=cfg.identify_target_attempts,
        window_seconds=cfg.identify_window_seconds,
        cases_per_customer_hour=cfg.cases_per_customer_hour,
    )


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with open_blob_store(settings.store) as blobs:
        db = await open_database(settings.store)
        app[DB] = db
        app[BLOBS] = blobs
        app[BANKING] = SqlCoreBanking(db, blobs, settings.web.secret_key)
        app[CASES] = cases = CaseStore(db)
        app[REVIEW] = ReviewDesk(db, blobs)
        app[LIMITER] = limiter = AttemptLimiter(db, settings.web.secret_key)
        app[INTAKE] = Intake(app[BANKING], cases, limiter, intake_limits(settings.web))
        app[SESSIONS] = SessionStore(db, timedelta(hours=settings.web.session_hours))
        await ensure_consent_texts(db)
        # Compiling templates takes a while: do it now, off the loop, not on a customer's request.
        await asyncio.to_thread(compile_all, app[JINJA])
        recovered = await cases.recover()
        if recovered:
            log.info("closed %d cases left in a call by an earlier run", recovered)
        yield
        await db.close()


async def _audit_checkpoints(app: web.Application) -> AsyncIterator[None]:
    """Sign the audit log's head every few minutes, and once more on the way down."""
    cfg = app[SETTINGS].audit
    if cfg.checkpoint_minutes == 0:
        log.warning("periodic audit checkpoints are off (CLOUDBRANCH_AUDIT_CHECKPOINT_MINUTES=0)")
        yield
        return
    db = app[DB]
    key = await asyncio.to_thread(signing_key, cfg)
    task = asyncio.create_task(
        checkpoint_every(db, key, cfg.checkpoint_minutes * 60.0), name="audit-checkpoints"
    )
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # Runs after _live's cleanup (cleanup_ctx unwinds in reverse), so the events of
        # calls ended at shutdown are covered; the database closes after this.
        try:
            await write_checkpoint(db, key, only_if_moved=True)
        except SQLAlchemyError:
            log.exception("could not write the audit checkpoint at shutdown")


async def _live(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[CALLS] = calls = CallManager(settings.media)
    app[HUB] = hub = Hub(settings.signaling)
    app[SESSION_WAKE] = SessionWake()
    app[DESK] = desk = LiveDesk(
        hub,
        app[CASES],
        calls,
        average_handle_seconds=settings.signaling.average_handle_seconds,
        reconnect_grace_seconds=settings.signaling.reconnect_grace_seconds,
    )
    desk.cobrowse = CobrowseDesk(hub, AuditedRecords(app[DB], app[BLOBS]))
    if settings.media.recording_dir is not None:
        desk.recordings = sink = RecordingSink(app[DB], app[BLOBS])
        # Recordings a crashed run left in the spool: finish them and put them on their cases.
        recovered = await asyncio.to_thread(recover_spool, settings.media.recording_dir)
        if recovered:
            log.warning("recovered %d recordings left by an earlier run", len(recovered))
            await sink.store(recovered)
    services = ServiceDesk(app[DB], GrantDesk(app[DB]), app[BANKING])
    app[SERVICES] = services
    app[AUTHORISE] = authorise = AuthoriseDesk(hub, app[DB], app[CASES], services.grants, services)
    desk.on_case_change = authorise.refresh
    engine = await _start_verification(app, desk)
    # Customers who were waiting when the last run stopped (or crashed) keep their place.
    desk.restore(await app[CASES].waiting())
    try:
        yield
    finally:
        await _stop_live(app)
        if engine is not None:
            await engine.close()


async def _start_verification(app: web.Application, desk: LiveDesk) -> EngineService | None:
    """Start the face engine's workers and hand the live desk a verification desk."""
    cfg = app[SETTINGS].verification
    if cfg.workers == 0:
        log.warning("identity verification is off (CLOUDBRANCH_FACE_WORKERS=0)")
        return None
    engine = EngineService(partial(build_engine, cfg.backend, cfg.models_dir), cfg.workers)
    await engine.start()
    app[ENGINE] = engine
    attempts = AttemptStore(app[DB])
    if interrupted := await attempts.abandon_running():
        log.warning("%d verification attempt(s) interrupted by a restart: aborted", interrupted)
    desk.verify = VerifyDesk(
        engine,
        app[BANKING],
        attempts,
        app[BLOBS],
        await asyncio.to_thread(load_policy),
        cfg,
        desk.send_verify,
    )
    return engine


async def _stop_live(app: web.Application) -> None:
    """End calls (both sides are told), then close every peer and socket. Idempotent."""
    await app[DESK].shutdown()
    await app[AUTHORISE].shutdown()
    await app[CALLS].close_all()
    await app[HUB].close_all()


def create_app(settings: Settings) -> web.Application:
    """Build the application; resources open in ``cleanup_ctx`` when it starts."""
    check_supported(settings)
    app = web.Application(
        middlewares=[
            forwarded.middleware(settings.web.trusted_proxies),
            middleware.errors,
            middleware.static_files,
            middleware.sessions,
            middleware.csrf,
        ],
        client_max_size=1024 * 1024,
    )
    app[SETTINGS] = settings
    app[CATALOG] = Catalog()
    app[JINJA] = make_environment()
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_audit_checkpoints)
    app.cleanup_ctx.append(_live)
    app.on_response_prepare.append(middleware.on_prepare)
    app.on_shutdown.append(_stop_live)
    app.add_routes(pages.routes)
    app.add_routes(evidence.routes)
    app.add_routes(services_api.routes)
    app.add_routes(audit.routes)
    app.add_routes(audit_export.routes)
    app.router.add_get("/ws", websocket)
    app.router.add_static(STATIC_PREFIX, STATIC_DIR, name="static")
    if RRWEB_DIR.is_dir():
        app.router.add_static(RRWEB_PREFIX, RRWEB_DIR, name="rrweb")
    else:
        log.warning("rrweb not found at %s (make npm-deps): co-browsing will not load", RRWEB_DIR)
    return app


def serve(settings: Settings) -> None:
    """Run the server until SIGINT/SIGTERM, then shut down gracefully."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    log.info("CloudBranch on http://%s:%d/", settings.web.host, settings.web.port)
    web.run_app(
        create_app(settings),
        host=settings.web.host,
        port=settings.web.port,
        shutdown_timeout=5.0,
        print=None,
        access_log=None,
    )
