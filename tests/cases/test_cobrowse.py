"""Co-browsing's core: the state machine, the guard over rrweb events, the desk's relay.

The guard is fed events as a modified customer page would send them (maskAllInputs switched off,
a blocked panel sent with its contents, a value set by a mutation …): each must be dropped, its
drop logged without the value and counted; the same events as rrweb sends them masked pass.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from cases.cobrowse import (
    COBROWSE_TRANSITIONS,
    CobrowseState,
    EventGuard,
    StoredStream,
    check_cobrowse_move,
    is_masked,
)
from cases.cobrowse_desk import Actor, CobrowseDesk, CobrowseTarget
from cases.errors import InvalidTransition
from signaling.config import SignalingConfig
from signaling.hub import Hub
from signaling.messages import (
    CobrowseAccept,
    CobrowseDecline,
    CobrowseEvents,
    CobrowsePointer,
    CobrowseRequest,
    CobrowseSnapshot,
    CobrowseStop,
    ErrorCode,
    ProtocolError,
)

SECRET = "hunter2-typed"
PIN = "204816"

# ---- events as rrweb 2.2.2 writes them --------------------------------------------------------


def el(node_id: int, tag: str, attrs: dict[str, Any] | None = None, *kids: dict[str, Any]) -> Any:
    return {
        "type": 2,
        "id": node_id,
        "tagName": tag,
        "attributes": attrs or {},
        "childNodes": list(kids),
    }


def text(node_id: int, content: str) -> dict[str, Any]:
    return {"type": 3, "id": node_id, "textContent": content}


def full(*body: dict[str, Any]) -> dict[str, Any]:
    html = el(2, "html", {}, el(3, "body", {}, *body))
    node = {"type": 0, "id": 1, "childNodes": [html]}
    return {
        "type": 2,
        "data": {"node": node, "initialOffset": {"top": 0, "left": 0}},
        "timestamp": 1,
    }


def page(chat: str = "*****", pad: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    """The call page: a chat field, a submit button, a check box, the blocked secure pad."""
    return full(
        el(10, "input", {"type": "text", "id": "chat-input", "value": chat}),
        el(11, "input", {"type": "submit", "value": "Send"}),
        el(12, "input", {"type": "checkbox", "value": "on", "checked": True}),
        el(13, "form", {"id": "secure-pad", "class": "secure-pad rr-block cb-block",
                        "rr_width": "300px", "rr_height": "200px"}, *pad),
        el(14, "textarea", {"value": "***"}, text(15, "***")),
        el(16, "select", {"value": "**"}, el(17, "option", {"value": "a"}, text(18, "A"))),
    )  # fmt: skip


def input_event(node_id: int, value: str, checked: bool = False) -> dict[str, Any]:
    data = {"source": 5, "id": node_id, "text": value, "isChecked": checked}
    return {"type": 3, "data": data, "timestamp": 2}


def mutation(**parts: Any) -> dict[str, Any]:
    data = {"source": 0, "texts": [], "attributes": [], "removes": [], "adds": [], **parts}
    return {"type": 3, "data": data, "timestamp": 3}


def guard_on_page() -> EventGuard:
    guard = EventGuard()
    assert guard.check(page()).reason is None
    return guard


# ---- the state machine ------------------------------------------------------------------------


def test_the_cobrowse_table_is_walked_whole() -> None:
    for current in CobrowseState:
        for wanted in CobrowseState:
            if wanted in COBROWSE_TRANSITIONS[current]:
                check_cobrowse_move(current, wanted)
            else:
                with pytest.raises(InvalidTransition, match=f'in state "{current.value}"'):
                    check_cobrowse_move(current, wanted)
    assert COBROWSE_TRANSITIONS[CobrowseState.OFF] == {CobrowseState.REQUESTED}


def test_mask_characters_only() -> None:
    assert is_masked("") and is_masked("******")
    assert not is_masked("**1*") and not is_masked(None) and not is_masked(123)


# ---- the guard: what rrweb sends passes -------------------------------------------------------


def test_masked_events_as_rrweb_sends_them_pass() -> None:
    guard = guard_on_page()
    for event in (
        input_event(10, "*" * len(SECRET)),
        input_event(12, "on", checked=True),  # a box: its static value, and whether it is ticked
        mutation(attributes=[{"id": 10, "attributes": {"value": "****"}}]),
        mutation(adds=[{"parentId": 3, "nextId": None, "node": el(20, "p", {}, text(21, "hi"))}]),
        mutation(texts=[{"id": 21, "value": "hello"}]),
        mutation(adds=[{"parentId": 3, "node": el(22, "progress", {"value": "0"})}]),
        mutation(attributes=[{"id": 22, "attributes": {"value": "3", "max": "4"}}]),
        {"type": 3, "data": {"source": 1, "positions": [{"x": 1, "y": 2, "id": 3}]}},
        {"type": 4, "data": {"href": "http://127.0.0.1/call", "width": 1280, "height": 900}},
    ):
        verdict = guard.check(event)
        assert verdict.reason is None, event
        assert json.loads(verdict.line) == event
    assert not guard.dropped


# ---- the guard: what a modified client would send is dropped ----------------------------------


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (page(chat=SECRET), "field_value"),  # maskAllInputs off: the snapshot holds the value
        (full(el(40, "input", {"value": SECRET})), "field_value"),  # no type: a text field
        (full(el(40, "input", {"type": "hidden", "value": SECRET})), "field_value"),
        (full(el(40, "textarea", {}, text(41, SECRET))), "field_value"),
        (full(el(40, "select", {"value": "b"})), "field_value"),
        (full(el(40, "select", {}, el(41, "option", {"selected": True}))), "option_selected"),
        (
            page(pad=(el(30, "input", {"type": "password", "value": "******"}),)),
            "inside_block",
        ),  # the blocked pad sent with its contents (even masked: nothing of it may be seen)
        (input_event(10, SECRET), "input_value"),
        (input_event(10, PIN), "input_value"),
        (input_event(99, "**1***"), "input_value"),  # an unknown node: masked or nothing
        (input_event(13, "******"), "blocked_input"),  # an input event for the pad itself
        (mutation(attributes=[{"id": 10, "attributes": {"value": SECRET}}]), "field_value"),
        (mutation(attributes=[{"id": 999, "attributes": {"value": PIN}}]), "field_value"),
        (mutation(adds=[{"parentId": 13, "node": text(50, PIN)}]), "inside_block"),
        (
            mutation(adds=[{"parentId": 3, "node": el(50, "input", {"value": PIN})}]),
            "field_value",
        ),
        (
            mutation(
                adds=[{"parentId": 3, "node": el(50, "div", {"class": "cb-block"}, text(51, PIN))}]
            ),
            "inside_block",
        ),
        (mutation(adds=[{"parentId": 14, "node": text(50, PIN)}]), "field_value"),
        ({"type": 6, "data": {"plugin": "rrweb/console@1", "payload": [PIN]}}, "event_type"),
        ({"type": 3, "data": {"source": 11, "payload": [PIN]}}, "source"),
        ({"type": 3, "data": "junk"}, "event_type"),
        (mutation(adds="junk"), "malformed"),
    ],
)
def test_events_carrying_input_values_are_dropped(
    event: dict[str, Any], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    guard = guard_on_page()
    verdict = guard.check(event)
    assert verdict.reason == reason
    assert verdict.line == ""
    assert guard.dropped == {reason: 1}


def test_a_value_added_later_to_a_blocked_element_is_a_leak() -> None:
    guard = guard_on_page()
    added = el(60, "section", {"class": "x cb-block"})
    assert guard.check(mutation(adds=[{"parentId": 3, "node": added}])).reason is None
    leak = mutation(adds=[{"parentId": 60, "node": el(61, "span", {}, text(62, PIN))}])
    assert guard.check(leak).reason == "inside_block"
    marked = mutation(attributes=[{"id": 10, "attributes": {"class": "cb-block"}}])
    assert guard.check(marked).reason is None
    assert guard.check(input_event(10, "*****")).reason == "blocked_input"


def test_an_oversized_event_is_refused() -> None:
    guard = EventGuard(max_event_bytes=1000)
    verdict = guard.check(full(el(40, "p", {}, text(41, "x" * 2000))))
    assert verdict.reason == "too_large" and verdict.size > 2000


def test_a_dropped_mutation_teaches_the_guard_nothing() -> None:
    guard = guard_on_page()
    bad = mutation(
        adds=[
            {"parentId": 3, "node": el(70, "input", {"type": "checkbox"})},
            {"parentId": 3, "node": el(71, "input", {"value": PIN})},
        ]
    )
    assert guard.check(bad).reason == "field_value"
    assert guard.check(input_event(70, PIN)).reason == "input_value"  # 70 is no known box


def test_the_stored_stream_is_bounded() -> None:
    from datetime import UTC, datetime

    stream = StoredStream(datetime.now(UTC), max_bytes=25)
    assert stream.add('{"a":1}', 7) and stream.add('{"b":2}', 7)
    assert not stream.add('{"c":33333}', 11) and stream.full
    assert not stream.add("{}", 2)
    assert stream.to_bytes() == b'{"a":1}\n{"b":2}\n'


# ---- the desk ---------------------------------------------------------------------------------


class FakeRecords:
    """Blob store and audit log of the tests."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.events: list[tuple[str, Actor, dict[str, Any]]] = []

    async def put(self, data: bytes) -> str:
        import hashlib

        key = hashlib.sha256(data).hexdigest()
        self.blobs[key] = data
        return key

    async def event(
        self, case_id: int, action: str, actor: Actor, actor_id: int | None, detail: dict[str, Any]
    ) -> None:
        assert case_id == 7
        self.events.append((action, actor, detail))


TARGET = CobrowseTarget("case1", 7, 3, "Advisor Li", "customer:case1", "advisor:3")


class Sides:
    """What each side of the call received."""

    def __init__(self, hub: Hub) -> None:
        self.got: dict[str, list[dict[str, Any]]] = {"customer": [], "advisor": []}
        self.conns = [
            hub.attach(TARGET.customer_key, self._sender("customer"), self._close),
            hub.attach(TARGET.advisor_key, self._sender("advisor"), self._close),
        ]

    def _sender(self, side: str) -> Any:
        async def send(raw: str) -> None:
            self.got[side].append(json.loads(raw))

        return send

    @staticmethod
    async def _close(code: int, reason: str) -> None:
        return None

    async def settle(self) -> None:
        await asyncio.sleep(0.01)

    def of(self, side: str, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.got[side] if m["type"] == kind]

    async def aclose(self) -> None:
        for conn in self.conns:
            await conn.aclose()


async def test_the_desk_relays_only_what_passes_and_stores_it_on_stop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub, records = Hub(SignalingConfig()), FakeRecords()
    desk, sides = CobrowseDesk(hub, records), Sides(hub)
    try:
        with pytest.raises(ProtocolError) as refused:
            await desk.from_customer(TARGET, CobrowseAccept(type="cobrowse.accept"))
        assert refused.value.code is ErrorCode.BAD_STATE and '"off"' in refused.value.message
        await desk.from_advisor(TARGET, CobrowseRequest(type="cobrowse.request"))
        with pytest.raises(ProtocolError):  # no pointing before the customer said yes
            await desk.from_advisor(TARGET, CobrowsePointer(type="cobrowse.pointer", x=0, y=0))
        await desk.from_customer(TARGET, CobrowseAccept(type="cobrowse.accept"))
        assert desk.state("case1") is CobrowseState.ON
        caplog.set_level(logging.INFO)
        batch = [page(), input_event(10, SECRET), input_event(10, "*" * len(SECRET))]
        await desk.from_customer(TARGET, CobrowseEvents(type="cobrowse.events", events=batch))
        await desk.from_advisor(TARGET, CobrowsePointer(type="cobrowse.pointer", x=0.5, y=0.25))
        await desk.from_advisor(TARGET, CobrowseSnapshot(type="cobrowse.snapshot"))
        await sides.settle()
        relayed = [e for m in sides.of("advisor", "cobrowse.events") for e in m["events"]]
        assert relayed == [batch[0], batch[2]]
        pointer = sides.of("customer", "cobrowse.pointer")
        assert pointer == [
            {"v": 1, "type": "cobrowse.pointer", "x": 0.5, "y": 0.25, "name": "Advisor Li"}
        ]
        assert sides.of("customer", "cobrowse.snapshot")

        await desk.from_customer(TARGET, CobrowseStop(type="cobrowse.stop"))
        await sides.settle()
        for side in ("customer", "advisor"):
            states = [m["state"] for m in sides.of(side, "cobrowse.state")]
            assert states == ["requested", "on", "off"], side
        assert sides.of("advisor", "cobrowse.state")[-1]["reason"] == "stopped_by_customer"
        actions = [a for a, _, _ in records.events]
        assert actions == ["cobrowse.started", "cobrowse.dropped", "cobrowse.stored",
                           "cobrowse.stopped"]  # fmt: skip
        stored = records.events[2][2]
        blob = records.blobs[stored["sha256"]]
        assert stored["events"] == 2 and stored["bytes"] == len(blob)
        assert [json.loads(line) for line in blob.decode().splitlines()] == relayed
        assert records.events[1][2] == {"count": 1, "reasons": {"input_value": 1}}
        everything = blob.decode() + json.dumps(records.events) + caplog.text
        everything += json.dumps(sides.got)
        assert "co-browse event dropped (input_value" in caplog.text
        assert SECRET not in everything
        with pytest.raises(ProtocolError):  # nothing more is relayed once stopped
            await desk.from_customer(
                TARGET, CobrowseEvents(type="cobrowse.events", events=[page()])
            )
    finally:
        await sides.aclose()


async def test_declining_and_the_call_ending() -> None:
    hub, records = Hub(SignalingConfig()), FakeRecords()
    desk, sides = CobrowseDesk(hub, records), Sides(hub)
    try:
        await desk.from_advisor(TARGET, CobrowseRequest(type="cobrowse.request"))
        with pytest.raises(ProtocolError):  # asked twice
            await desk.from_advisor(TARGET, CobrowseRequest(type="cobrowse.request"))
        await desk.from_customer(TARGET, CobrowseDecline(type="cobrowse.decline"))
        assert desk.state("case1") is CobrowseState.OFF and records.events == []
        await desk.from_advisor(TARGET, CobrowseRequest(type="cobrowse.request"))
        await desk.from_customer(TARGET, CobrowseAccept(type="cobrowse.accept"))
        await desk.from_customer(TARGET, CobrowseEvents(type="cobrowse.events", events=[page()]))
        await desk.end("case1")
        await sides.settle()
        assert sides.of("customer", "cobrowse.state")[-1]["reason"] == "call_ended"
        assert [(a, who) for a, who, _ in records.events] == [
            ("cobrowse.started", "customer"),
            ("cobrowse.stored", "system"),
            ("cobrowse.stopped", "system"),
        ]
        assert desk.state("case1") is CobrowseState.OFF
        await desk.end("case1")  # idempotent
    finally:
        await sides.aclose()
