"""The co-browse wire messages: parsed by the one codec, bounded in count, size and range."""

from __future__ import annotations

import json

import pytest

from signaling.messages import (
    COBROWSE_MAX_BYTES,
    COBROWSE_MAX_EVENTS,
    CobrowseDraw,
    CobrowseEvents,
    CobrowseHighlight,
    CobrowsePointer,
    CobrowseRequest,
    CobrowseStateMsg,
    Codec,
    ErrorCode,
    ProtocolError,
)

codec = Codec(64 * 1024)


def frame(**msg: object) -> str:
    return json.dumps({"v": 1, **msg})


def refused(raw: str) -> ProtocolError:
    with pytest.raises(ProtocolError) as err:
        codec.parse(raw)
    return err.value


def test_each_cobrowse_message_parses() -> None:
    assert isinstance(codec.parse(frame(type="cobrowse.request")), CobrowseRequest)
    pointer = codec.parse(frame(type="cobrowse.pointer", x=0.25, y=1))
    assert isinstance(pointer, CobrowsePointer) and (pointer.x, pointer.y) == (0.25, 1.0)
    mark = codec.parse(frame(type="cobrowse.highlight", selector="#pad-submit"))
    assert isinstance(mark, CobrowseHighlight) and mark.node_id is None
    assert isinstance(codec.parse(frame(type="cobrowse.highlight", node_id=42)), CobrowseHighlight)
    draw = codec.parse(frame(type="cobrowse.draw", points=[[0, 0], [0.5, 0.5]]))
    assert isinstance(draw, CobrowseDraw) and draw.points[1] == (0.5, 0.5)
    for kind in ("cobrowse.accept", "cobrowse.decline", "cobrowse.stop", "cobrowse.snapshot"):
        assert codec.parse(frame(type=kind)).type == kind


@pytest.mark.parametrize(
    "msg",
    [
        {"type": "cobrowse.pointer", "x": 1.5, "y": 0},
        {"type": "cobrowse.pointer", "x": -0.1, "y": 0},
        {"type": "cobrowse.highlight", "selector": "input[value^='1']"},  # only #element-id
        {"type": "cobrowse.highlight", "selector": "#a, body"},
        {"type": "cobrowse.highlight", "node_id": 0},
        {"type": "cobrowse.draw", "points": [[0, 0]]},
        {"type": "cobrowse.draw", "points": [[0, 0]] * 65},
        {"type": "cobrowse.events", "events": []},
        {"type": "cobrowse.events", "events": [{}] * (COBROWSE_MAX_EVENTS + 1)},
        {"type": "cobrowse.events", "events": ["not an object"]},
        {"type": "cobrowse.request", "extra": 1},
    ],
)
def test_malformed_cobrowse_messages_are_refused(msg: dict[str, object]) -> None:
    assert refused(frame(**msg)).code is ErrorCode.INVALID_MESSAGE


def test_only_event_batches_may_be_larger_than_other_messages() -> None:
    big = [{"type": 2, "data": {"pad": "x" * 200_000}}]
    parsed = codec.parse(frame(type="cobrowse.events", events=big))
    assert isinstance(parsed, CobrowseEvents) and parsed.events == big
    err = refused(frame(type="chat.send", text="x" * 100_000))
    assert err.code is ErrorCode.TOO_LARGE and err.ref == "chat.send"
    huge = [{"type": 2, "data": {"pad": "x" * COBROWSE_MAX_BYTES}}]
    assert refused(frame(type="cobrowse.events", events=huge)).code is ErrorCode.TOO_LARGE


def test_state_message_as_the_pages_read_it() -> None:
    msg = CobrowseStateMsg(state="on", advisor_name="Li")
    assert json.loads(Codec.encode(msg)) == {
        "v": 1,
        "type": "cobrowse.state",
        "state": "on",
        "advisor_name": "Li",
        "reason": None,
    }
