"""The services over HTTP and WebSocket: the advisor confirms a passed attempt, the customer's
own page sends the secret, both consoles get the new state, errors are JSON with a code, and
the advisor's socket never carries the secret.

Verification itself is tested with real faces elsewhere (tests/cases/test_verify.py, the
browser tests); here a passed attempt is stored for the case as the verify desk stores one.
"""

from __future__ import annotations

import json
import re
import secrets
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient
from argon2 import PasswordHasher
from sqlalchemy import select

from store.audit import list_events
from store.models import Card, Case, VerificationAttempt
from tests.web.conftest import ADVISOR_PASSWORD, World, consent, identify, login
from tests.web.test_ws import TIMEOUT, advisor_socket, customer_socket, receive
from web.accounts import create_staff
from web.keys import DB

NEW_PIN = "739162"


async def _frames(ws: Any, sink: list[str]) -> None:
    """Everything left on ``ws`` (waits briefly), appended to ``sink``."""
    while True:
        try:
            frame = await ws.receive(timeout=0.3)
        except TimeoutError:
            return
        if frame.type != WSMsgType.TEXT:
            return
        sink.append(frame.data)


async def _service_state(ws: Any, step: str, seen: list[str] | None = None) -> dict[str, Any]:
    while True:
        frame = await ws.receive(timeout=TIMEOUT)
        assert frame.type == WSMsgType.TEXT
        if seen is not None:
            seen.append(frame.data)
        data: dict[str, Any] = json.loads(frame.data)
        if data["type"] == "service.state" and data["status"]["step"] == step:
            return data["status"]


async def _call(world: World, service: str) -> tuple[TestClient, Any, Any, str]:  # type: ignore[type-arg]
    _, adv = await advisor_socket(world)
    await adv.send_json({"type": "presence.set", "status": "available"})
    client = await world.make_client()
    status, _ = await identify(client, world.ada, service)
    assert status == 303
    await consent(client)
    cust = await client.ws_connect("/ws")
    await receive(cust, "welcome")
    await cust.send_json({"type": "queue.join"})
    snapshot = await receive(adv, "queue.snapshot")
    while not snapshot["entries"]:
        snapshot = await receive(adv, "queue.snapshot")
    case_id = snapshot["entries"][0]["case_id"]
    await adv.send_json({"type": "queue.accept", "case_id": case_id})
    await receive(cust, "call.started")
    await _service_state(cust, "verify")  # the call start tells both sides where they stand
    return client, adv, cust, case_id


async def _passed_attempt(world: World, case_public_id: str) -> str:
    public_id = secrets.token_hex(8)
    async with world.app[DB].session() as s, s.begin():
        case = (await s.execute(select(Case).where(Case.public_id == case_public_id))).scalar_one()
        now = datetime.now(UTC)
        s.add(
            VerificationAttempt(
                public_id=public_id, case_id=case.id, customer_id=case.customer_id,
                advisor_id=case.advisor_id, nonce="n", challenges='["blink"]', state="passed",
                reasons="[]", scores="{}", started_at=now, ended_at=now,
            )
        )  # fmt: skip
    return public_id


async def _csrf(client: TestClient) -> str:  # type: ignore[type-arg]
    page = await (await client.get("/call")).text()
    found = re.search(r'"csrf":\s*"([^"]+)"', page)
    assert found, "the call page carries no CSRF token"
    return found.group(1)


async def test_pin_change_from_confirmation_to_receipt(world: World) -> None:
    client, adv, cust, case_id = await _call(world, "pin_change")
    advisor_saw: list[str] = []
    attempt = await _passed_attempt(world, case_id)
    await adv.send_json({"type": "grant.confirm", "attempt_id": attempt})
    assert (await _service_state(cust, "ready"))["grant_expires_at"]
    await _service_state(adv, "ready", advisor_saw)
    token = await _csrf(client)
    weak = await client.post(
        "/api/case/pin", json={"pin": "123456", "confirm": "123456"},
        headers={"X-CSRF-Token": token},
    )  # fmt: skip
    assert weak.status == 422
    body = await weak.json()
    assert (body["error"], body["field"], body["reason"]) == ("pin_weak", "pin", "sequence")
    done = await client.post(
        "/api/case/pin", json={"pin": NEW_PIN, "confirm": NEW_PIN},
        headers={"X-CSRF-Token": token},
    )  # fmt: skip
    assert done.status == 200, await done.text()
    receipt = (await done.json())["receipt"]
    assert receipt["case"] == case_id and receipt["what"] == "service.done.pin_changed"
    status = await _service_state(adv, "done", advisor_saw)
    assert status["receipt"]["what"] == "service.done.pin_changed"
    await _frames(adv, advisor_saw)
    assert advisor_saw and not any(NEW_PIN in frame for frame in advisor_saw)
    async with world.app[DB].session() as s:
        (pin_hash,) = (await s.execute(select(Card.pin_hash))).scalars().all()[:1]
    assert pin_hash is not None and PasswordHasher().verify(pin_hash, NEW_PIN)
    again = await client.post(
        "/api/case/pin", json={"pin": "582039", "confirm": "582039"},
        headers={"X-CSRF-Token": token},
    )  # fmt: skip
    assert again.status == 409 and (await again.json())["error"] == "grant_refused"
    async with world.app[DB].session() as s:
        row_id = (await s.execute(select(Case.id).where(Case.public_id == case_id))).scalar_one()
    events = list(reversed(await list_events(world.app[DB], row_id)))
    trail = [(e.action, e.outcome) for e in events]
    assert trail[:4] == [
        ("case.opened", "ok"),
        ("case.consented", "ok"),
        ("case.queued", "ok"),
        ("case.in_call", "ok"),
    ]
    assert trail[4:] == [
        ("grant.issued", "ok"),
        ("pin_change", "refused"),  # the weak PIN
        ("pin_change", "ok"),
        ("pin_change", "refused"),  # the grant was used
    ]
    assert not any(NEW_PIN in json.dumps(e.detail) for e in events)


async def test_requests_without_csrf_grant_or_body_are_refused_with_codes(world: World) -> None:
    client, _, _, _ = await _call(world, "pin_change")
    token = await _csrf(client)
    no_csrf = await client.post("/api/case/pin", json={"pin": NEW_PIN, "confirm": NEW_PIN})
    assert no_csrf.status == 403
    no_grant = await client.post(
        "/api/case/pin", json={"pin": NEW_PIN, "confirm": NEW_PIN},
        headers={"X-CSRF-Token": token},
    )  # fmt: skip
    body = await no_grant.json()
    assert no_grant.status == 409 and body["error"] == "grant_refused"
    assert body["reason"] == "no_grant"
    missing = await client.post(
        "/api/case/pin", json={"pin": NEW_PIN}, headers={"X-CSRF-Token": token}
    )
    assert missing.status == 400 and (await missing.json())["field"] == "confirm"
    garbage = await client.post("/api/case/pin", data=b"{not json", headers={"X-CSRF-Token": token})
    assert garbage.status == 400 and (await garbage.json())["error"] == "bad_json"
    other = await client.post(
        "/api/case/ukey", json={"password": "Str0ng!pass", "confirm": "Str0ng!pass"},
        headers={"X-CSRF-Token": token},
    )  # fmt: skip
    assert other.status == 409 and (await other.json())["error"] == "wrong_service"
    stranger = await world.make_client()
    assert (await stranger.get("/api/case/service")).status == 401


async def test_only_the_call_advisor_confirms_and_customers_cannot(world: World) -> None:
    _, adv, cust, case_id = await _call(world, "pin_change")
    attempt = await _passed_attempt(world, case_id)
    await cust.send_json({"type": "grant.confirm", "attempt_id": attempt})
    assert (await receive(cust, "error"))["code"] == "forbidden"
    await adv.send_json({"type": "grant.confirm", "attempt_id": "no-such-attempt"})
    assert (await receive(adv, "error"))["code"] == "not_found"
    await adv.send_json({"type": "grant.decline", "attempt_id": attempt, "reason": "other face"})
    status = await _service_state(cust, "declined")
    assert status["declined_reason"] == "other face"
    await adv.send_json({"type": "grant.confirm", "attempt_id": attempt})
    error = await receive(adv, "error")
    assert error["code"] == "grant_refused" and "already_reviewed" in error["message"]


async def test_card_loss_blocks_from_the_waiting_room(world: World) -> None:
    client, _ = await customer_socket(world)  # pin_change case: wrong service
    token = await _csrf(client)
    refused = await client.post("/api/case/loss-report", headers={"X-CSRF-Token": token})
    assert refused.status == 409 and (await refused.json())["error"] == "wrong_service"
    loser = await world.make_client()
    status, _ = await identify(loser, world.grace, "card_loss")
    assert status == 303
    await consent(loser)
    token = await _csrf(loser)
    before = await (await loser.get("/api/case/service")).json()
    assert before["step"] == "block"
    blocked = await loser.post("/api/case/loss-report", headers={"X-CSRF-Token": token})
    assert blocked.status == 200
    status_body = await blocked.json()
    assert status_body["step"] == "verify" and status_body["blocked"]["cards"]
    async with world.app[DB].session() as s:
        statuses = sorted((await s.execute(select(Card.status))).scalars().all())
    assert statuses == ["active", "lost"]  # Grace's card only


async def test_ukey_reset_is_approved_by_a_supervisor_console(world: World) -> None:
    await create_staff(world.app[DB], "supervisor1", "Sup Li", ADVISOR_PASSWORD, "supervisor")
    _, adv, cust, case_id = await _call(world, "ukey_reset")
    sup_client = await world.make_client()
    await login(sup_client, "supervisor1")
    page = await sup_client.get("/staff/approvals")
    assert page.status == 200
    sup = await sup_client.ws_connect("/ws")
    assert (await receive(sup, "approvals.pending"))["items"] == []
    attempt = await _passed_attempt(world, case_id)
    await adv.send_json({"type": "grant.confirm", "attempt_id": attempt})
    await _service_state(cust, "approval")
    items = (await receive(sup, "approvals.pending"))["items"]
    while not items:
        items = (await receive(sup, "approvals.pending"))["items"]
    assert items[0]["case"] == case_id and items[0]["best_frame_url"].endswith("best.jpg")
    await adv.send_json({"type": "approval.decide", "approval_id": items[0]["id"], "approve": True})
    assert (await receive(adv, "error"))["code"] == "forbidden"  # an advisor cannot approve
    await sup.send_json({"type": "approval.decide", "approval_id": items[0]["id"], "approve": True})
    await _service_state(cust, "ready")
    assert (await receive(sup, "approvals.pending"))["items"] == []
    anonymous = await (await world.make_client()).get("/staff/approvals")
    assert anonymous.url.path == "/staff/login"
    advisor = await world.make_client()
    await login(advisor)
    assert (await advisor.get("/staff/approvals", allow_redirects=False)).status == 403


async def test_outbox_is_for_admins_and_supervisors(world: World) -> None:
    await create_staff(world.app[DB], "supervisor1", "Sup Li", ADVISOR_PASSWORD, "supervisor")
    advisor = await world.make_client()
    await login(advisor)
    assert (await advisor.get("/admin/outbox", allow_redirects=False)).status == 403
    sup = await world.make_client()
    await login(sup, "supervisor1")
    assert (await sup.get("/admin/outbox")).status == 200


async def test_staff_land_on_their_console_or_the_page_they_asked_for(world: World) -> None:
    await create_staff(world.app[DB], "supervisor1", "Sup Li", ADVISOR_PASSWORD, "supervisor")

    async def land(username: str, next_path: str | None) -> str:
        client = await world.make_client()
        query = f"?next={next_path}" if next_path else ""
        page = await (await client.get("/staff/login" + query)).text()
        found = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert found
        form = {"csrf_token": found.group(1), "username": username, "password": ADVISOR_PASSWORD}
        hidden = re.search(r'name="next" value="([^"]+)"', page)
        if hidden:
            form["next"] = hidden.group(1)
        resp = await client.post("/staff/login", data=form, allow_redirects=False)
        assert resp.status == 303
        return resp.headers["Location"]

    assert await land("advisor1", None) == "/advisor"
    assert await land("supervisor1", None) == "/staff/approvals"
    assert await land("supervisor1", "/admin/outbox") == "/admin/outbox"
    assert await land("supervisor1", "//evil.example/") == "/staff/approvals"
