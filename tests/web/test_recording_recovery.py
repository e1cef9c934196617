"""A server that died mid-call left a half-written recording in its spool: the next start
finishes it, puts it on the case it belongs to (closed by the restart) and says it was
recovered — to the auditor (a flag) and in the audit log."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

from aiohttp.test_utils import TestServer
from sqlalchemy import select

from cases.review import ReviewDesk
from cases.states import CaseState
from store.models import AuditEvent, Case, Customer, Recording
from tests.web.conftest import World, running_world
from tests.web.test_audit_pages import make_webm
from web.app import create_app
from web.keys import CASES, DB
from web.settings import Settings


async def test_a_recording_left_by_a_crash_is_finished_and_stored_at_the_next_start(
    settings: Settings, shared_data: Path
) -> None:
    spool = settings.media.recording_dir
    assert spool is not None, "calls are recorded by default"
    world: World
    async with running_world(settings, shared_data) as world:
        cases = world.app[CASES]
        async with world.app[DB].session() as s:
            ada = (
                await s.scalars(select(Customer.id).where(Customer.name == "Ada Lovelace"))
            ).one()
        case = await cases.open(ada, "pin_change", "en", False)
        for state in (CaseState.CONSENTED, CaseState.QUEUED, CaseState.IN_CALL):
            await cases.move(case.public_id, state)
    # The process "died" in the call: the case is still in_call and the file is cut mid-cluster.
    whole = await asyncio.to_thread(make_webm, (200, 40, 40), 3.0)
    folder = spool / case.public_id
    folder.mkdir(parents=True)
    (folder / "customer.webm").write_bytes(whole[: len(whole) * 2 // 3])
    started = datetime.now(UTC).replace(microsecond=0)
    (folder / "recording.json").write_text(
        json.dumps({"call_id": case.public_id, "started_at": started.isoformat()})
    )

    app = create_app(settings)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with app[DB].session() as s:
            row = (await s.scalars(select(Case).where(Case.public_id == case.public_id))).one()
            recordings = (await s.scalars(select(Recording))).all()
            stored = (
                await s.scalars(select(AuditEvent).where(AuditEvent.action == "recording.stored"))
            ).all()
        assert row.state == "closed" and row.ended_by == "system"
        assert [(r.side, r.recovered) for r in recordings] == [("customer", True)]
        assert 0 < recordings[0].size < len(whole) and recordings[0].video_frames > 5
        assert recordings[0].clock_zero.replace(tzinfo=UTC) == started
        assert [json.loads(e.detail)["recovered"] for e in stored] == [True]
        detail = await ReviewDesk(app[DB]).detail(1, case.public_id)
        assert "recording_recovered" in detail.summary.flags
        assert not folder.exists()  # the spool is empty again
    finally:
        await server.close()
