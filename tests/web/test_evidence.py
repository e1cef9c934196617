"""Verification evidence images: staff who may review them get them, nobody else."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import select

from store.models import AuditEvent, Customer, Staff, VerificationAttempt
from tests.web.conftest import World, consent, identify, login
from web.keys import BLOBS, CASES, DB

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64


async def _attempt(world: World, advisor_username: str) -> str:
    client = await world.make_client()
    await identify(client, world.ada)
    await consent(client)
    async with world.app[DB].session() as s:
        advisor = (await s.scalars(select(Staff).where(Staff.username == advisor_username))).one()
        customer = (await s.scalars(select(Customer))).first()
    assert customer is not None
    case = await world.app[CASES].open(customer.id, "pin_change", "en", False)
    key = await world.app[BLOBS].put(JPEG)
    async with world.app[DB].session() as s, s.begin():
        s.add(
            VerificationAttempt(
                public_id="attempt-1",
                case_id=case.id,
                customer_id=customer.id,
                advisor_id=advisor.id,
                nonce="n" * 22,
                challenges="[]",
                state="passed",
                reasons="[]",
                scores="{}",
                best_frame_blob_key=key,
                started_at=datetime.now(UTC),
            )
        )
    return "/staff/verification/attempt-1/best.jpg"


async def test_the_advisor_of_the_call_and_auditors_see_the_best_frame(world: World) -> None:
    url = await _attempt(world, "advisor1")
    advisor = await world.make_client()
    await login(advisor, "advisor1")
    resp = await advisor.get(url)
    assert resp.status == 200 and resp.content_type == "image/jpeg"
    assert await resp.read() == JPEG
    auditor = await world.make_client()
    await login(auditor, "auditor1")
    assert (await auditor.get(url)).status == 200
    assert (await auditor.get(url)).status == 200
    # Issue 12: evidence views escaped the audit log. Each image sent is one view, by whom.
    async with world.app[DB].session() as s:
        viewed = (
            await s.scalars(select(AuditEvent).where(AuditEvent.action == "evidence.viewed"))
        ).all()
        staff = {row.id: row.username for row in await s.execute(select(Staff.id, Staff.username))}
    assert [(staff[e.actor_id], json.loads(e.detail)) for e in viewed] == [
        ("advisor1", {"attempt_id": "attempt-1", "image": "best"}),
        ("auditor1", {"attempt_id": "attempt-1", "image": "best"}),
        ("auditor1", {"attempt_id": "attempt-1", "image": "best"}),
    ]


async def test_customers_and_strangers_get_nothing(world: World) -> None:
    url = await _attempt(world, "auditor1")  # an attempt not run by advisor1
    advisor = await world.make_client()
    await login(advisor, "advisor1")
    assert (await advisor.get(url)).status == 403
    customer = await world.make_client()
    await identify(customer, world.grace)
    resp = await customer.get(url, allow_redirects=False)
    assert resp.status in (302, 303) and "/staff/login" in resp.headers["Location"]
    assert (await advisor.get("/staff/verification/nope/best.jpg")).status == 404
