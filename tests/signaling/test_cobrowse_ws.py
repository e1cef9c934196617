"""Co-browsing over the real WebSocket endpoint: who may send what, the guard on the relay, the
stored stream and its audit events (the app of tests/web, served on loopback)."""

from __future__ import annotations

import json
from typing import Any

from store.audit import list_events
from tests.web.conftest import World, settings, world  # noqa: F401  (fixtures of these tests)
from tests.web.test_ws import (
    _error,
    _in_call,
    advisor_socket,
    closed_case,
    customer_socket,
    receive,
)
from web.keys import BLOBS, DB

SECRET = "correct-horse-42"


def snapshot(value: str) -> dict[str, Any]:
    field = {
        "type": 2,
        "id": 5,
        "tagName": "input",
        "attributes": {"value": value},
        "childNodes": [],
    }
    body = {"type": 2, "id": 3, "tagName": "body", "attributes": {}, "childNodes": [field]}
    node = {"type": 0, "id": 1, "childNodes": [body]}
    return {"type": 2, "data": {"node": node}, "timestamp": 1}


def typed(value: str) -> dict[str, Any]:
    return {"type": 3, "data": {"source": 5, "id": 5, "text": value}, "timestamp": 2}


async def test_only_the_calls_two_sides_may_cobrowse(world: World) -> None:  # noqa: F811
    _, lone = await customer_socket(world, world.grace)
    assert (await _error(lone, '{"type": "cobrowse.accept"}'))["code"] == "bad_state"  # no call
    _, idle = await advisor_socket(world)
    assert (await _error(idle, '{"type": "cobrowse.request"}'))["code"] == "bad_state"
    adv, cust, _ = await _in_call(world)
    assert (await _error(cust, '{"type": "cobrowse.request"}'))["code"] == "forbidden"
    events = json.dumps({"type": "cobrowse.events", "events": [typed("***")]})
    assert (await _error(adv, events))["code"] == "forbidden"
    refused = await _error(cust, '{"type": "cobrowse.accept"}')  # nothing was asked
    assert (refused["code"], refused["ref"]) == ("bad_state", "cobrowse.accept")
    assert (await _error(adv, '{"type": "cobrowse.pointer", "x": 0.5, "y": 0.5}'))[
        "code"
    ] == "bad_state"


async def test_a_session_relays_masked_events_drops_values_and_is_stored(
    world: World,  # noqa: F811
) -> None:
    adv, cust, case_id = await _in_call(world)
    await adv.send_json({"type": "cobrowse.request"})
    asked = await receive(cust, "cobrowse.state", state="requested")
    assert asked["advisor_name"]
    await cust.send_json({"type": "cobrowse.accept"})
    await receive(adv, "cobrowse.state", state="on")
    batch = [snapshot("****"), typed(SECRET), typed("*" * len(SECRET)), snapshot(SECRET)]
    await cust.send_json({"type": "cobrowse.events", "events": batch})
    relayed = await receive(adv, "cobrowse.events")
    assert relayed["events"] == [batch[0], batch[2]]

    await adv.send_json({"type": "cobrowse.highlight", "selector": "#pad-submit"})
    mark = await receive(cust, "cobrowse.highlight")
    assert (mark["selector"], mark["name"]) == ("#pad-submit", asked["advisor_name"])
    await adv.send_json({"type": "cobrowse.snapshot"})
    await receive(cust, "cobrowse.snapshot")

    await adv.send_json({"type": "call.hangup"})  # the call's end stops and stores the stream
    ended = await receive(cust, "cobrowse.state", state="off")
    assert ended["reason"] == "call_ended"
    await receive(cust, "call.ended")
    case = await closed_case(world, case_id)  # the stream is stored before the case closes
    events = {e.action: e for e in await list_events(world.app[DB], case.id)}
    assert events["cobrowse.dropped"].detail == {
        "count": 2,
        "reasons": {"field_value": 1, "input_value": 1},
    }
    stored = events["cobrowse.stored"].detail
    blob = await world.app[BLOBS].get(str(stored["sha256"]))
    assert [json.loads(line) for line in blob.decode().splitlines()] == relayed["events"]
    assert stored["events"] == 2 and stored["bytes"] == len(blob)
    assert events["cobrowse.stopped"].detail["reason"] == "call_ended"
    every = json.dumps([e.detail for e in events.values()], default=str) + blob.decode()
    assert SECRET not in every
