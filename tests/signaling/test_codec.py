"""The codec takes any text: each bad frame is one ProtocolError with a code, never another
exception, and every error it raises can be sent back (issue 12)."""

from __future__ import annotations

import json

import pytest

import signaling.messages
from signaling.messages import (
    COBROWSE_MAX_BYTES,
    ApprovalDecide,
    CobrowseEvents,
    CobrowseEventsOut,
    Codec,
    ErrorCode,
    ErrorMessage,
    ProtocolError,
)

codec = Codec(64 * 1024)


def refused(raw: str | bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as err:
        codec.parse(raw)
    # The refusal goes back to the client as it is: it must encode.
    Codec.encode(
        ErrorMessage(
            code=err.value.code, message=err.value.message, ref=err.value.ref, field=err.value.field
        )
    )
    return err.value


def nested(depth: int) -> str:
    """A co-browse event batch whose one event nests ``depth`` levels in all."""
    inner: object = 1
    for _ in range(depth - 3):
        inner = {"a": inner}
    return json.dumps({"v": 1, "type": "cobrowse.events", "events": [inner]})


def test_a_lone_surrogate_is_refused_with_a_code_that_can_be_sent() -> None:
    assert refused(r'{"type":"\ud800"}').code is ErrorCode.BAD_JSON
    assert refused(r'{"type":"chat.send","text":"a\udc00"}').code is ErrorCode.BAD_JSON
    assert refused('{"type":"chat.send","text":"\ud800"}').code is ErrorCode.BAD_JSON
    assert refused(b'{"type":"ping","x":"\xff"}').code is ErrorCode.BAD_JSON
    # A surrogate pair is one character, taken as it is.
    events = codec.parse(r'{"type":"cobrowse.events","events":[{"t":"\ud83d\ude00"}]}')
    assert isinstance(events, CobrowseEvents) and events.events == [{"t": "😀"}]


def test_thirty_thousand_brackets_are_too_deep_not_a_recursion_error() -> None:
    assert refused("[" * 30_000).code is ErrorCode.TOO_DEEP
    assert refused('{"type":"cobrowse.events","events":' + "[" * 30_000).code is ErrorCode.TOO_DEEP


def test_the_deepest_batch_taken_can_still_be_relayed() -> None:
    parsed = codec.parse(nested(150))
    assert isinstance(parsed, CobrowseEvents)
    Codec.encode(CobrowseEventsOut(events=parsed.events))  # the advisor's copy encodes
    assert refused(nested(400)).code is ErrorCode.TOO_DEEP


def test_huge_numbers_are_refused_with_a_code() -> None:
    digits = "9" * 5000
    err = refused('{"type":"approval.decide","approval_id":' + digits + ',"approve":true}')
    assert err.code is ErrorCode.NUMBER_TOO_LARGE
    assert refused('{"type":"ping","v":' + digits + "}").code is ErrorCode.NUMBER_TOO_LARGE
    assert refused('{"type":"ping","v":NaN}').code is ErrorCode.BAD_JSON


@pytest.mark.parametrize("approval_id", [2**63, 2**31, 0, -1, "7", True, 1.5])
def test_approval_ids_out_of_the_databases_range_name_the_field(approval_id: object) -> None:
    raw = json.dumps({"type": "approval.decide", "approval_id": approval_id, "approve": True})
    err = refused(raw)
    assert err.code is ErrorCode.INVALID_MESSAGE
    assert err.field == "approval_id" and err.ref == "approval.decide"
    assert err.message.startswith("approval_id: ")
    largest = {"type": "approval.decide", "approval_id": 2**31 - 1, "approve": 1}
    ok = codec.parse(json.dumps(largest))
    assert isinstance(ok, ApprovalDecide) and ok.approval_id == 2**31 - 1


def test_an_echoed_field_name_is_bounded_and_encodable() -> None:
    err = refused('{"type":"ping","' + "k" * 5000 + '":1}')
    assert err.code is ErrorCode.INVALID_MESSAGE and len(err.message) <= 300
    assert err.field is not None and len(err.field) <= 64
    unknown = refused('{"type":"' + "x" * 5000 + '"}')
    assert unknown.code is ErrorCode.UNKNOWN_TYPE and unknown.ref is None


def _no_parsing(data: bytes, **_: object) -> object:
    raise AssertionError("the frame was parsed")


@pytest.mark.parametrize(
    ("kind", "limit"),
    [("chat.send", 32 * 1024), ("ping", 8 * 1024), ("approval.decide", 8 * 1024)],
)
def test_a_frame_over_its_types_limit_is_refused_before_it_is_parsed(
    monkeypatch: pytest.MonkeyPatch, kind: str, limit: int
) -> None:
    monkeypatch.setattr(signaling.messages, "from_json", _no_parsing)
    for size in (limit + 1, COBROWSE_MAX_BYTES):
        raw = '{"v":1,"type":"' + kind + '","text":"' + "x" * size + '"}'
        err = refused(raw)
        assert err.code is ErrorCode.TOO_LARGE and err.ref == kind


def test_only_a_frame_that_names_its_type_first_may_be_large(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batch = [{"type": 2, "data": {"pad": "x" * 200_000}}]
    first = json.dumps({"v": 1, "type": "cobrowse.events", "events": batch})
    assert isinstance(codec.parse(first), CobrowseEvents)
    last = json.dumps({"events": batch, "v": 1, "type": "cobrowse.events"})
    monkeypatch.setattr(signaling.messages, "from_json", _no_parsing)
    assert refused(last).code is ErrorCode.TOO_LARGE
    # A 1 MiB frame of another type is never parsed, whatever it says later on.
    trick = '{"v":1,"type":"chat.send","text":"' + "x" * 1_000_000 + '","type":"cobrowse.events"}'
    assert refused(trick).code is ErrorCode.TOO_LARGE


def test_a_frame_that_names_another_type_later_is_held_to_its_real_types_limit() -> None:
    raw = json.dumps({"type": "cobrowse.events", "text": "x" * 100_000, "events": [{}]})
    raw = raw[:-1] + ', "type": "chat.send"}'  # JSON keeps the last of two equal keys
    err = refused(raw)
    assert err.code is ErrorCode.TOO_LARGE and err.ref == "chat.send"
