"""Property-based fuzzing of the WebSocket codec (issue 12): whatever a client sends, the codec
returns a message or raises ProtocolError with a code, and both can be sent on a socket.

Fixed seed (``derandomize``), no example database, 10,000 inputs per test: the frames drawn
from the schema (every type, its fields with any JSON value, deep nesting, huge numbers) and
raw text or bytes.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signaling.messages import (
    CLIENT_TYPES,
    ChatMessage,
    ChatSend,
    ClientMessage,
    CobrowseEvents,
    CobrowseEventsOut,
    Codec,
    ErrorCode,
    ErrorMessage,
    ProtocolError,
)

codec = Codec(64 * 1024)
FUZZ = settings(
    max_examples=10_000,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FIELDS = (
    "v",
    "type",
    "status",
    "case_id",
    "sdp",
    "text",
    "camera_label",
    "attempt_id",
    "reason",
    "approval_id",
    "approve",
    "events",
    "x",
    "y",
    "node_id",
    "selector",
    "points",
)
# Every character, surrogates included.
ANY_CHAR = st.characters(codec=None, categories=None)
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=2**31 - 2, max_value=2**64),
    st.floats(allow_nan=True, allow_infinity=True),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(ANY_CHAR, max_size=40))
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(ANY_CHAR, max_size=8), inner)
    ),
    max_leaves=6,
)


def _dumps(value: Any, ascii_only: bool) -> str:
    return json.dumps(value, ensure_ascii=ascii_only, allow_nan=True)


@st.composite
def schema_frames(draw: st.DrawFn) -> str | bytes:
    """A frame shaped like a client message: a known (or nearly known) type and fields."""
    kind = draw(st.one_of(st.sampled_from(sorted(CLIENT_TYPES)), st.text(ANY_CHAR, max_size=12)))
    msg: dict[str, Any] = {"type": kind}
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=4, unique=True)):
        msg[name] = draw(json_values)
    text = _dumps(msg, draw(st.booleans()))
    trick = draw(st.sampled_from(("", "deep", "digits", "cut", "bytes")))
    if trick == "deep":
        depth = draw(st.sampled_from((150, 198, 199, 200, 201, 202, 256, 30_000)))
        closed = draw(st.sampled_from((0, depth)))
        text = text[:-1] + ',"x":' + "[" * depth + "]" * closed + "}"
    elif trick == "digits":
        digits = draw(st.sampled_from((19, 20, 4300, 4301, 5000)))
        text = text[:-1] + ',"approval_id":' + "9" * digits + "}"
    elif trick == "cut":
        text = text[: draw(st.integers(0, len(text)))]
    elif trick == "bytes":
        return text.encode("utf-8", "surrogatepass")
    return text


def assert_sendable(raw: str | bytes) -> None:
    """The codec's answer to ``raw`` is a message or a coded error, and it encodes."""
    try:
        msg: ClientMessage = codec.parse(raw)
    except ProtocolError as err:
        assert isinstance(err.code, ErrorCode)
        reply = ErrorMessage(code=err.code, message=err.message, ref=err.ref, field=err.field)
        Codec.encode(reply)
        return
    assert msg.type in CLIENT_TYPES
    if isinstance(msg, CobrowseEvents):  # relayed to the advisor as it is
        Codec.encode(CobrowseEventsOut(events=msg.events))
    if isinstance(msg, ChatSend):  # echoed to both sides
        Codec.encode(ChatMessage(sender="customer", sender_name="c", text=msg.text, sent_at=""))


@FUZZ
@given(schema_frames())
def test_any_frame_shaped_like_a_message_gets_a_message_or_a_code(raw: str | bytes) -> None:
    assert_sendable(raw)


@FUZZ
@given(st.one_of(st.text(ANY_CHAR, max_size=200), st.binary(max_size=200)))
def test_any_raw_text_or_bytes_gets_a_message_or_a_code(raw: str | bytes) -> None:
    assert_sendable(raw)
