"""The WebSocket: the queue → accept → chat → hang-up journey, and every refusal path."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from cases import live as live_module
from signaling.messages import VerifyResult
from store.audit import list_events
from store.db import retry_transient
from store.models import AuditEvent, Case, ChatMessage
from tests.store.test_postgres import reset_schema
from tests.web.conftest import (
    ADVISOR_PASSWORD,
    World,
    consent,
    csrf_of,
    identify,
    login,
    make_settings,
    running_world,
)
from web import ws as ws_module
from web.accounts import change_staff, create_staff
from web.keys import CASES, DB, DESK

TIMEOUT = 5.0


async def receive(ws: Any, kind: str, **want: Any) -> dict[str, Any]:
    """The next message of type ``kind`` whose fields match ``want`` (others are skipped)."""
    while True:
        frame = await ws.receive(timeout=TIMEOUT)
        assert frame.type == WSMsgType.TEXT, f"socket ended waiting for {kind}: {frame}"
        data: dict[str, Any] = json.loads(frame.data)
        if data["type"] == kind and all(data.get(k) == v for k, v in want.items()):
            return data


async def customer_socket(world: World, person: Any = None) -> tuple[TestClient, Any]:  # type: ignore[type-arg]
    client = await world.make_client()
    status, _ = await identify(client, person or world.ada)
    assert status == 303
    await consent(client)
    ws = await client.ws_connect("/ws")
    welcome = await receive(ws, "welcome")
    assert welcome["role"] == "customer"
    return client, ws


async def advisor_socket(world: World) -> tuple[TestClient, Any]:  # type: ignore[type-arg]
    client = await world.make_client()
    await login(client)
    ws = await client.ws_connect("/ws")
    assert (await receive(ws, "welcome"))["role"] == "advisor"
    return client, ws


async def _in_call(world: World) -> tuple[Any, Any, str]:
    _, adv = await advisor_socket(world)
    await adv.send_json({"type": "presence.set", "status": "available"})
    _, cust = await customer_socket(world)
    await cust.send_json({"type": "queue.join"})
    snapshot = await receive(adv, "queue.snapshot")
    while not snapshot["entries"]:
        snapshot = await receive(adv, "queue.snapshot")
    case_id = snapshot["entries"][0]["case_id"]
    await adv.send_json({"type": "queue.accept", "case_id": case_id})
    await receive(cust, "call.started")
    return adv, cust, case_id


async def closed_case(world: World, public_id: str) -> Case:
    """The case once it has closed: both sides are told of a call's end first, then its
    recordings are stored and the case closes."""
    for _ in range(100):
        async with world.app[DB].session() as s:
            case = await s.scalar(select(Case).where(Case.public_id == public_id))
        if case is not None and case.state == "closed":
            return case
        await asyncio.sleep(0.05)
    raise AssertionError(f"case {public_id} did not close within 5 s")


async def test_queue_accept_chat_hangup(world: World) -> None:
    await _journey(world)


async def test_the_same_journey_on_postgresql(
    pg_url: str, tmp_path: Path, shared_data: Path
) -> None:
    await reset_schema(pg_url)
    settings = make_settings(tmp_path, shared_data, CLOUDBRANCH_DATABASE_URL=pg_url)
    async with running_world(settings, shared_data) as world:
        await _journey(world)


async def _journey(world: World) -> None:
    _, adv = await advisor_socket(world)
    await adv.send_json({"type": "presence.set", "status": "available"})
    await receive(adv, "presence.state", status="available")

    _, cust = await customer_socket(world)
    await cust.send_json({"type": "queue.join"})
    position = await receive(cust, "queue.position")
    assert position["position"] == 1 and position["size"] == 1

    snapshot = await receive(adv, "queue.snapshot")
    while not snapshot["entries"]:
        snapshot = await receive(adv, "queue.snapshot")
    entry = snapshot["entries"][0]
    assert entry["customer_name"] == "Ada Lovelace" and entry["service"] == "pin_change"
    assert world.ada.id_number not in json.dumps(snapshot)

    await adv.send_json({"type": "queue.accept", "case_id": entry["case_id"]})
    assert (await receive(adv, "call.started"))["peer_name"] == "Ada Lovelace"
    assert (await receive(cust, "call.started"))["peer_name"] == "Advisor Wang"

    await cust.send_json({"type": "chat.send", "text": "你好, I lost my card"})
    for ws in (adv, cust):
        msg = await receive(ws, "chat.message")
        assert msg["text"] == "你好, I lost my card" and msg["sender"] == "customer"
    await adv.send_json({"type": "chat.send", "text": "I can help"})
    assert (await receive(cust, "chat.message"))["sender_name"] == "Advisor Wang"

    await cust.send_json({"type": "call.hangup"})
    for ws in (adv, cust):
        ended = await receive(ws, "call.ended")
        assert ended["ended_by"] == "customer"
    await receive(adv, "presence.state", status="available")

    case = await closed_case(world, entry["case_id"])
    async with world.app[DB].session() as s:
        chats = (await s.scalars(select(ChatMessage))).all()
    assert case.state == "closed" and case.ended_by == "customer"
    assert case.call_started_at is not None and case.call_ended_at is not None
    assert case.call_ended_at >= case.call_started_at
    assert [c.sender for c in chats] == ["customer", "advisor"]
    events = [e for e in await list_events(world.app[DB], case.id) if e.action == "chat.message"]
    assert sorted(str(e.detail["sender"]) for e in events) == ["advisor", "customer"]
    assert not any("lost my card" in json.dumps(e.detail) for e in events)


async def test_both_sides_hear_the_end_before_the_slow_steps_and_a_failing_one_closes_anyway(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 12: end_call told neither side until the recording upload was done, and an
    exception in it left the case open and the advisor in the call."""
    desk = world.app[DESK]
    release = asyncio.Event()
    real_close = desk.media.close

    async def slow_then_broken_close(case_id: str) -> Any:
        await real_close(case_id)
        await release.wait()  # a long recording upload
        raise OSError("blob store unreachable")

    desk.media.close = slow_then_broken_close  # type: ignore[method-assign]
    adv, cust, case_id = await _in_call(world)
    await cust.send_json({"type": "call.hangup"})
    for ws in (adv, cust):  # told while the upload still runs
        assert (await receive(ws, "call.ended"))["ended_by"] == "customer"
    await receive(adv, "presence.state", status="available")
    release.set()
    case = await closed_case(world, case_id)
    assert case.ended_by == "customer"
    assert "could not close the call's media" in caplog.text
    # The advisor takes the next customer.
    _, nxt = await customer_socket(world, world.grace)
    await nxt.send_json({"type": "queue.join"})
    snapshot = await receive(adv, "queue.snapshot")
    while not snapshot["entries"]:
        snapshot = await receive(adv, "queue.snapshot")
    await adv.send_json({"type": "queue.accept", "case_id": snapshot["entries"][0]["case_id"]})
    await receive(nxt, "call.started")


def _locked() -> OperationalError:
    return OperationalError("UPDATE cases", {}, sqlite3.OperationalError("database is locked"))


async def _queued(world: World) -> tuple[Any, Any, str]:
    _, adv = await advisor_socket(world)
    _, cust = await customer_socket(world)
    await cust.send_json({"type": "queue.join"})
    snapshot = await receive(adv, "queue.snapshot")
    while not snapshot["entries"]:
        snapshot = await receive(adv, "queue.snapshot")
    return adv, cust, snapshot["entries"][0]["case_id"]


async def test_a_dropped_customer_is_abandoned_even_when_the_database_is_busy(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12: when 500 queued customers dropped at once, grace timers hit "database is
    locked" and died: cases stayed queued in the database, out of the live queue and the log."""
    store = world.app[CASES]
    real_move, failures = store.move, [_locked(), _locked()]

    async def busy_move(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return await real_move(*args, **kwargs)

    adv, cust, case_id = await _queued(world)
    monkeypatch.setattr(store, "move", busy_move)
    await cust.close()
    snapshot = await receive(adv, "queue.snapshot", entries=[])  # after the grace and retries
    assert snapshot["entries"] == [] and not failures
    case = await store.get(case_id)
    assert case.state.value == "abandoned"
    events = [e.action for e in await list_events(world.app[DB], case.id)]
    assert "case.abandoned" in events


async def test_a_drop_the_database_keeps_refusing_stays_in_the_queue_and_is_retried(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = world.app[CASES]
    real_move, refusing = store.move, [True]

    async def busy_move(*args: Any, **kwargs: Any) -> Any:
        if refusing[0]:
            raise _locked()
        return await real_move(*args, **kwargs)

    adv, cust, case_id = await _queued(world)
    monkeypatch.setattr(store, "move", busy_move)
    monkeypatch.setattr(
        live_module, "retry_transient", partial(retry_transient, attempts=2, first_delay=0.01)
    )
    await cust.close()
    await asyncio.sleep(1.5)  # past the grace (1 s): every try failed
    desk = world.app[DESK]
    assert case_id in desk.queue and (await store.get(case_id)).state.value == "queued"
    refusing[0] = False  # the database is back: the next try abandons it
    await receive(adv, "queue.snapshot", entries=[])
    assert (await store.get(case_id)).state.value == "abandoned"


async def test_two_customers_see_their_positions(world: World) -> None:
    _, first = await customer_socket(world)
    await first.send_json({"type": "queue.join"})
    assert (await receive(first, "queue.position"))["position"] == 1
    _, second = await customer_socket(world, world.grace)
    await second.send_json({"type": "queue.join"})
    got = await receive(second, "queue.position")
    assert (got["position"], got["size"]) == (2, 2)
    assert got["estimated_wait_seconds"] > 0
    await first.send_json({"type": "queue.leave"})
    assert (await receive(second, "queue.position"))["position"] == 1


async def _error(ws: Any, raw: str) -> dict[str, Any]:
    await ws.send_str(raw)
    return await receive(ws, "error")


async def test_malformed_oversized_unknown_messages_get_codes_and_socket_survives(
    world: World,
) -> None:
    _, ws = await customer_socket(world)
    assert (await _error(ws, "{not json"))["code"] == "bad_json"
    assert (await _error(ws, "[1, 2]"))["code"] == "invalid_message"
    assert (await _error(ws, '{"type": "launch.rockets"}'))["code"] == "unknown_type"
    assert (await _error(ws, '{"type": "ping", "v": 9}'))["code"] == "unsupported_version"
    bad = await _error(ws, '{"type": "chat.send", "text": ""}')
    assert bad["code"] == "invalid_message" and "text" in bad["message"]
    big = json.dumps({"type": "chat.send", "text": "x" * 70_000})
    assert (await _error(ws, big))["code"] == "too_large"
    await ws.send_json({"type": "ping"})
    assert (await receive(ws, "pong"))["type"] == "pong"


async def test_frames_that_used_to_kill_the_handler_get_a_code_and_the_socket_stays_open(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 12: a lone surrogate closed the socket (1001), 30,000 brackets logged a
    RecursionError per frame, a 5,000-digit number was called bad JSON."""
    _, ws = await customer_socket(world)
    with caplog.at_level(logging.WARNING):
        assert (await _error(ws, r'{"type":"\ud800"}'))["code"] == "bad_json"
        for _ in range(3):
            assert (await _error(ws, "[" * 30_000))["code"] == "too_deep"
        huge = '{"type":"ping","v":' + "9" * 5000 + "}"
        assert (await _error(ws, huge))["code"] == "number_too_large"
        await ws.send_json({"type": "ping"})
        assert (await receive(ws, "pong"))["type"] == "pong"
    assert not ws.closed
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_an_approval_id_beyond_the_database_is_an_error_naming_the_field(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    await create_staff(world.app[DB], "supervisor1", "Sup Li", ADVISOR_PASSWORD, "supervisor")
    client = await world.make_client()
    await login(client, "supervisor1")
    ws = await client.ws_connect("/ws")
    await receive(ws, "welcome")
    with caplog.at_level(logging.WARNING):
        raw = json.dumps({"type": "approval.decide", "approval_id": 2**63, "approve": True})
        err = await _error(ws, raw)
    assert err["code"] == "invalid_message" and err["field"] == "approval_id"
    assert not [r for r in caplog.records if r.exc_info]


async def test_customer_cannot_act_as_advisor_or_reach_another_case(world: World) -> None:
    _, other = await customer_socket(world, world.grace)
    await other.send_json({"type": "queue.join"})
    await receive(other, "queue.position")
    _, ws = await customer_socket(world)
    for raw in (
        '{"type": "presence.set", "status": "available"}',
        '{"type": "queue.accept", "case_id": "abc"}',
    ):
        assert (await _error(ws, raw))["code"] == "forbidden"
    # Chat and hang-up only ever reach the sender's own case: without a call they are refused.
    assert (await _error(ws, '{"type": "chat.send", "text": "hi"}'))["code"] == "bad_state"
    assert (await _error(ws, '{"type": "call.hangup"}'))["code"] == "bad_state"


async def test_advisor_cannot_use_customer_actions_or_accept_when_away(world: World) -> None:
    _, adv = await advisor_socket(world)
    assert (await _error(adv, '{"type": "queue.join"}'))["code"] == "forbidden"
    away = await _error(adv, '{"type": "queue.accept", "case_id": "abc"}')
    assert away["code"] == "bad_state"
    await adv.send_json({"type": "presence.set", "status": "available"})
    gone = await _error(adv, '{"type": "queue.accept", "case_id": "abc"}')
    assert gone["code"] == "not_found"
    offer = await _error(adv, '{"type": "webrtc.offer", "sdp": "v=0"}')
    assert offer["code"] == "bad_state"


async def test_garbage_sdp_is_refused_and_call_goes_on(world: World) -> None:
    adv, cust, _ = await _in_call(world)
    err = await _error(cust, '{"type": "webrtc.offer", "sdp": "hello"}')
    assert err["code"] == "invalid_message"
    await cust.send_json({"type": "chat.send", "text": "still here"})
    assert (await receive(adv, "chat.message"))["text"] == "still here"


async def test_socket_needs_a_session_and_same_origin(world: World) -> None:
    client = await world.make_client()
    resp = await client.get("/ws", headers={"Connection": "Upgrade", "Upgrade": "websocket"})
    assert resp.status == 401 and (await resp.json())["error"] == "unauthorized"
    await identify(client, world.ada)
    await consent(client)
    cross = await client.get("/ws", headers={"Origin": "http://evil.example"})
    assert cross.status == 403 and (await cross.json())["error"] == "bad_origin"


async def test_one_session_opens_a_few_sockets_not_unlimited(world: World) -> None:
    """Issue 12: one identified customer could open sockets without limit."""
    client, first = await customer_socket(world)
    others = [await client.ws_connect("/ws") for _ in range(3)]  # four tabs in all
    for ws in others:
        assert (await receive(ws, "welcome"))["role"] == "customer"
    refused = await client.get("/ws", headers={"Connection": "Upgrade", "Upgrade": "websocket"})
    assert refused.status == 429 and (await refused.json())["error"] == "too_many_sockets"
    await others[0].close()
    await asyncio.sleep(0.1)
    again = await client.ws_connect("/ws")  # a closed tab frees its place
    assert (await receive(again, "welcome"))["role"] == "customer"
    await first.send_json({"type": "ping"})
    assert (await receive(first, "pong"))["type"] == "pong"


async def _closed_with(ws: Any) -> tuple[int | None, str]:
    while True:
        frame = await ws.receive(timeout=TIMEOUT)
        if frame.type == WSMsgType.CLOSE:  # the server's close frame: its code and reason
            return int(frame.data), str(frame.extra or "")
        if frame.type in (WSMsgType.CLOSED, WSMsgType.CLOSING):
            return ws.close_code, str(frame.extra or "")


async def test_logging_out_closes_the_sessions_console_sockets_at_once(world: World) -> None:
    """Issue 12: staff sockets stayed open after logout."""
    client, ws = await advisor_socket(world)
    _, other_ws = await advisor_socket(world)  # the same advisor in another browser
    page = await client.get("/advisor")
    token = csrf_of(await page.text())
    resp = await client.post("/staff/logout", data={"csrf_token": token}, allow_redirects=False)
    assert resp.status == 303
    assert await asyncio.wait_for(_closed_with(ws), 2) == (4401, "signed out")
    await other_ws.send_json({"type": "ping"})  # the other browser's session goes on
    assert (await receive(other_ws, "pong"))["type"] == "pong"


@pytest.mark.parametrize(
    ("change", "reason"),
    [({"active": False}, "account deactivated"), ({"role": "auditor"}, "role changed")],
)
async def test_deactivation_or_a_role_change_closes_the_console(
    world: World, monkeypatch: pytest.MonkeyPatch, change: dict[str, Any], reason: str
) -> None:
    """Made by another process (``cloudbranch staff deactivate``): seen at the next re-check."""
    monkeypatch.setattr(ws_module, "STAFF_RECHECK_SECONDS", 0.2)
    _, ws = await advisor_socket(world)
    await change_staff(world.app[DB], "advisor1", **change)
    assert await asyncio.wait_for(_closed_with(ws), 3) == (4401, reason)
    client = await world.make_client()
    page = await client.get("/staff/login")
    form = {"csrf_token": csrf_of(await page.text()), "username": "advisor1"}
    form["password"] = ADVISOR_PASSWORD
    resp = await client.post("/staff/login", data=form, allow_redirects=False)
    if "active" in change:
        assert resp.status == 401  # and no new console either
    else:
        refused = await client.get("/ws", headers={"Connection": "Upgrade", "Upgrade": "websocket"})
        assert refused.status == 403  # an auditor has no live console


async def test_identified_but_not_consented_customer_gets_no_socket(world: World) -> None:
    client = await world.make_client()
    await identify(client, world.ada)
    resp = await client.get("/ws")
    assert resp.status == 403


async def test_reload_keeps_the_place_and_leaving_for_good_frees_it(world: World) -> None:
    client, ws = await customer_socket(world)
    await ws.send_json({"type": "queue.join"})
    await receive(ws, "queue.position", position=1)
    _, other = await customer_socket(world, world.grace)
    await other.send_json({"type": "queue.join"})
    await receive(other, "queue.position", position=2)
    await ws.close()  # a reload: back within the grace period
    again = await client.ws_connect("/ws")
    await again.send_json({"type": "queue.join"})
    await receive(again, "queue.position", position=1)
    await again.close()  # now gone for good
    await receive(other, "queue.position", position=1)


async def test_advisor_who_drops_mid_call_ends_it_for_the_customer(world: World) -> None:
    adv, cust, _ = await _in_call(world)
    await adv.close()
    ended = await receive(cust, "call.ended")
    assert ended["ended_by"] == "system" and ended["reason"] == "advisor_disconnected"


async def test_shutdown_tells_both_sides_then_closes_their_sockets(world: World) -> None:
    adv, cust, _ = await _in_call(world)
    closing = asyncio.create_task(world.server.close())
    for ws in (adv, cust):
        ended = await receive(ws, "call.ended")
        assert ended["reason"] == "server_shutdown"
        frame = await ws.receive(timeout=TIMEOUT)
        while frame.type == WSMsgType.TEXT:
            frame = await ws.receive(timeout=TIMEOUT)
        assert frame.type in (WSMsgType.CLOSE, WSMsgType.CLOSED) and ws.close_code == 1001
    await closing
    async with world.app[DB].session() as s:
        case = (await s.scalars(select(Case))).one()
    assert case.state == "closed" and case.ended_by == "system"


async def test_a_flood_of_messages_is_throttled_with_a_code(world: World) -> None:
    _, ws = await customer_socket(world)
    for _ in range(60):
        await ws.send_json({"type": "ping"})
    kinds: list[str] = []
    while len(kinds) < 60:
        frame = await ws.receive(timeout=TIMEOUT)
        data = json.loads(frame.data)
        if data["type"] in {"pong", "error"}:
            kinds.append(data["type"] if data["type"] == "pong" else data["code"])
    assert kinds.count("pong") >= 40 and kinds.count("rate_limited") >= 10
    await asyncio.sleep(1.0)  # the bucket refills: the socket is usable again
    await ws.send_json({"type": "ping"})
    await receive(ws, "pong")


async def test_verification_messages_respect_roles(world: World) -> None:
    adv, cust, _ = await _in_call(world)
    assert (await _error(cust, '{"type": "verify.start"}'))["code"] == "forbidden"
    # This node runs without face workers: the advisor is told, not left waiting.
    assert (await _error(adv, '{"type": "verify.start"}'))["code"] == "verify_unavailable"
    await cust.send_json({"type": "device.info", "camera_label": "FaceTime HD Camera"})
    await cust.send_json({"type": "ping"})
    await receive(cust, "pong")  # device.info was taken without an error


async def test_the_customer_never_receives_scores_reasons_or_images(world: World) -> None:
    adv, cust, case_id = await _in_call(world)
    result = VerifyResult(
        attempt_id="a1",
        outcome="refer",
        reasons=["match.borderline"],
        scores={"match": 0.51},
        best_frame_url="/staff/verification/a1/best.jpg",
        reference_url="/staff/verification/a1/reference.jpg",
        attempts_left=2,
    )
    world.app[DESK].send_verify(case_id, result)
    staff_copy = await receive(adv, "verify.result")
    customer_copy = await receive(cust, "verify.result")
    assert staff_copy["scores"] == {"match": 0.51} and staff_copy["best_frame_url"]
    assert customer_copy["outcome"] == "refer"
    assert customer_copy["scores"] == {} and customer_copy["reasons"] == []
    assert customer_copy["best_frame_url"] is None and customer_copy["reference_url"] is None


async def test_a_customer_who_starts_again_elsewhere_keeps_one_place_in_the_queue(
    world: World,
) -> None:
    """Issue 12: one identified customer could open case after case, each waiting in the queue
    with sockets of its own. A new case now ends the customer's earlier ones not yet in a call:
    out of the queue, their pages told, the log saying which case took over."""
    adv, first, old_case = await _queued(world)
    other_browser = await world.make_client()
    assert (await identify(other_browser, world.ada))[0] == 303  # the same customer, again
    assert await asyncio.wait_for(_closed_with(first), 2) == (4409, "continued in another window")
    snapshot = await receive(adv, "queue.snapshot")
    assert [e["case_id"] for e in snapshot["entries"]] == []
    async with world.app[DB].session() as s:
        cases = {c.public_id: c for c in await s.scalars(select(Case))}
        event = (
            await s.scalars(
                select(AuditEvent).where(
                    AuditEvent.case_id == cases[old_case].id,
                    AuditEvent.action == "case.abandoned",
                )
            )
        ).one()
    assert cases[old_case].state == "abandoned"
    (new_case,) = [c for c in cases.values() if c.public_id != old_case]
    assert new_case.state == "identified"
    assert json.loads(event.detail)["superseded_by"] == new_case.public_id
    await consent(other_browser)  # the new visit goes on
    ws = await other_browser.ws_connect("/ws")
    assert (await receive(ws, "welcome"))["role"] == "customer"


async def test_a_new_case_leaves_a_call_in_progress_alone(world: World) -> None:
    _, cust, case_id = await _in_call(world)
    again = await world.make_client()
    assert (await identify(again, world.ada))[0] == 303
    await cust.send_json({"type": "ping"})
    assert (await receive(cust, "pong"))["type"] == "pong"
    async with world.app[DB].session() as s:
        state = await s.scalar(select(Case.state).where(Case.public_id == case_id))
    assert state == "in_call"
