"""Wire messages of the CloudBranch WebSocket, protocol version 1.

Every message is a JSON object with a ``type`` tag and a protocol version ``v``. Client messages
are parsed with one ``TypeAdapter`` over a discriminated union; anything malformed, oversized,
too deeply nested, unknown or of another version raises :class:`ProtocolError` carrying a code
the client can show. Any text at all gets either a message or such an error, never another
exception.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import from_json

PROTOCOL_VERSION = 1
# The largest id the database's INTEGER columns hold (PostgreSQL's are 32-bit).
MAX_ID = 2**31 - 1

Role = Literal["customer", "advisor"]


class ErrorCode(StrEnum):
    """Codes of ``error`` messages; the pages map each to a translated sentence."""

    BAD_JSON = "bad_json"
    TOO_LARGE = "too_large"
    TOO_DEEP = "too_deep"
    NUMBER_TOO_LARGE = "number_too_large"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_MESSAGE = "invalid_message"
    UNSUPPORTED_VERSION = "unsupported_version"
    FORBIDDEN = "forbidden"
    BAD_STATE = "bad_state"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    BUSY = "busy"
    INTERNAL = "internal"
    VERIFY_UNAVAILABLE = "verify_unavailable"
    VERIFY_LOCKED = "verify_locked"
    VERIFY_LIMIT = "verify_limit"
    NO_REFERENCE = "no_reference"
    GRANT_REFUSED = "grant_refused"


def _printable(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, lone surrogates written out (``\\ud800``), so that
    an error message quoting a client's input can always be encoded."""
    return text[:limit].encode("utf-8", "backslashreplace").decode("utf-8")


class ProtocolError(Exception):
    """A client message that cannot be accepted; ``code`` goes back in an ``error`` message,
    with ``field`` naming the part of the message at fault when there is one."""

    def __init__(
        self, code: ErrorCode, message: str, ref: str | None = None, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = _printable(message, 300)
        self.ref = None if ref is None else _printable(ref, 40)
        self.field = None if field is None else _printable(field, 64)


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    v: Literal[1] = 1


# ---- client → server ----------------------------------------------------------------------


class QueueJoin(_Msg):
    """Customer: join the waiting queue for the case bound to this session."""

    type: Literal["queue.join"]


class QueueLeave(_Msg):
    """Customer: leave the queue (the case is abandoned)."""

    type: Literal["queue.leave"]


class PresenceSet(_Msg):
    """Advisor: become available for calls or step away."""

    type: Literal["presence.set"]
    status: Literal["available", "away"]


class QueueAccept(_Msg):
    """Advisor: take the waiting customer of this case into a call."""

    type: Literal["queue.accept"]
    case_id: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")]


class WebrtcOffer(_Msg):
    """Either side in a call: an SDP offer with all ICE candidates gathered (no trickle)."""

    type: Literal["webrtc.offer"]
    sdp: Annotated[str, Field(min_length=1, max_length=60_000)]


class ChatSend(_Msg):
    """Either side in a call: a chat message."""

    type: Literal["chat.send"]
    text: Annotated[str, Field(min_length=1, max_length=2000)]


class CallHangup(_Msg):
    """Either side in a call: end it."""

    type: Literal["call.hangup"]


class Ping(_Msg):
    """Keep-alive; answered with ``pong``."""

    type: Literal["ping"]


class VerifyStart(_Msg):
    """Advisor in a call: start an identity verification attempt."""

    type: Literal["verify.start"]


class VerifyCancel(_Msg):
    """Advisor in a call: stop the running attempt."""

    type: Literal["verify.cancel"]


class DeviceInfo(_Msg):
    """Customer: what the browser says about the camera (a weak hint of injected video)."""

    type: Literal["device.info"]
    camera_label: Annotated[str, Field(max_length=200)] = ""


class GrantConfirm(_Msg):
    """Advisor: the passed attempt ``attempt_id`` shows this customer; authorise the service."""

    type: Literal["grant.confirm"]
    attempt_id: Annotated[str, Field(min_length=1, max_length=64)]


class GrantDecline(_Msg):
    """Advisor: do not authorise on ``attempt_id``, for ``reason``."""

    type: Literal["grant.decline"]
    attempt_id: Annotated[str, Field(min_length=1, max_length=64)]
    reason: Annotated[str, Field(min_length=1, max_length=200)]


class ApprovalDecide(_Msg):
    """Supervisor: approve or reject a service that needs a second member of staff."""

    type: Literal["approval.decide"]
    approval_id: Annotated[int, Field(ge=1, le=MAX_ID, strict=True)]
    approve: bool
    reason: Annotated[str, Field(max_length=200)] = ""


# ---- co-browsing (issue 6; docs/pages.md "Co-browsing") -----------------------------------

# A batch of rrweb events: at most this many per message; the frame itself may be larger than
# other messages (a full snapshot of the page), up to COBROWSE_MAX_BYTES.
COBROWSE_MAX_EVENTS = 200
COBROWSE_MAX_BYTES = 1024 * 1024

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
# Highlight targets by selector: an element id only (``#pad-submit``), nothing more expressive.
HIGHLIGHT_SELECTOR = r"^#[A-Za-z][A-Za-z0-9_-]{0,63}$"


class CobrowseRequest(_Msg):
    """Advisor in a call: ask the customer to share their page."""

    type: Literal["cobrowse.request"]


class CobrowseAccept(_Msg):
    """Customer: yes, share my page (recording starts when ``cobrowse.state`` says ``on``)."""

    type: Literal["cobrowse.accept"]


class CobrowseDecline(_Msg):
    """Customer: no, do not share my page."""

    type: Literal["cobrowse.decline"]


class CobrowseStop(_Msg):
    """Either side: stop co-browsing now."""

    type: Literal["cobrowse.stop"]


class CobrowseEvents(_Msg):
    """Customer while sharing: a batch of rrweb events (each checked by the server's guard)."""

    type: Literal["cobrowse.events"]
    events: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=COBROWSE_MAX_EVENTS)]


class CobrowseSnapshot(_Msg):
    """Advisor while viewing: ask the customer's page for a fresh full snapshot (late join)."""

    type: Literal["cobrowse.snapshot"]


class CobrowsePointer(_Msg):
    """Advisor while viewing: where they point, as fractions of the customer's viewport."""

    type: Literal["cobrowse.pointer"]
    x: Fraction
    y: Fraction


class CobrowseHighlight(_Msg):
    """Advisor while viewing: outline one element, by rrweb node id or by ``#element-id``."""

    type: Literal["cobrowse.highlight"]
    node_id: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    selector: Annotated[str, Field(max_length=65, pattern=HIGHLIGHT_SELECTOR)] | None = None


class CobrowseDraw(_Msg):
    """Advisor while viewing: a short free-hand stroke, points as viewport fractions."""

    type: Literal["cobrowse.draw"]
    points: Annotated[list[tuple[Fraction, Fraction]], Field(min_length=2, max_length=64)]


ClientMessage = Annotated[
    QueueJoin
    | QueueLeave
    | PresenceSet
    | QueueAccept
    | WebrtcOffer
    | ChatSend
    | CallHangup
    | Ping
    | VerifyStart
    | VerifyCancel
    | DeviceInfo
    | GrantConfirm
    | GrantDecline
    | ApprovalDecide
    | CobrowseRequest
    | CobrowseAccept
    | CobrowseDecline
    | CobrowseStop
    | CobrowseEvents
    | CobrowseSnapshot
    | CobrowsePointer
    | CobrowseHighlight
    | CobrowseDraw,
    Field(discriminator="type"),
]

CLIENT_TYPES = frozenset(
    {
        "queue.join",
        "queue.leave",
        "presence.set",
        "queue.accept",
        "webrtc.offer",
        "chat.send",
        "call.hangup",
        "ping",
        "verify.start",
        "verify.cancel",
        "device.info",
        "grant.confirm",
        "grant.decline",
        "approval.decide",
        "cobrowse.request",
        "cobrowse.accept",
        "cobrowse.decline",
        "cobrowse.stop",
        "cobrowse.events",
        "cobrowse.snapshot",
        "cobrowse.pointer",
        "cobrowse.highlight",
        "cobrowse.draw",
    }
)


# ---- server → client ----------------------------------------------------------------------


class Welcome(_Msg):
    """First message on every connection: who the server thinks you are."""

    type: Literal["welcome"] = "welcome"
    role: Role
    name: str
    case_id: str | None = None
    ice_servers: list[dict[str, str | list[str]]] = Field(default_factory=list)
    ice_loopback_only: bool = False


class QueuePosition(_Msg):
    """Customer: where they stand in the queue (1 = next)."""

    type: Literal["queue.position"] = "queue.position"
    position: int
    size: int
    estimated_wait_seconds: int


class QueueEntry(BaseModel):
    """One waiting customer as the advisor console shows it."""

    model_config = ConfigDict(frozen=True)
    case_id: str
    customer_name: str
    service: str
    waiting_since: str  # ISO 8601, UTC
    elderly_mode: bool = False
    lang: str = "zh-CN"


class QueueSnapshot(_Msg):
    """Advisor: the whole waiting queue, pushed on every change."""

    type: Literal["queue.snapshot"] = "queue.snapshot"
    entries: list[QueueEntry]
    advisors_available: int


class PresenceState(_Msg):
    """Advisor: their presence as the server holds it."""

    type: Literal["presence.state"] = "presence.state"
    status: Literal["offline", "available", "away", "in_call"]


class CallStarted(_Msg):
    """Both sides: the call is on; the browser now sends its ``webrtc.offer``."""

    type: Literal["call.started"] = "call.started"
    case_id: str
    peer_name: str
    service: str


class WebrtcAnswer(_Msg):
    """The server's SDP answer to an offer."""

    type: Literal["webrtc.answer"] = "webrtc.answer"
    sdp: str


class ChatMessage(_Msg):
    """A chat message as delivered to both sides (the sender gets its echo)."""

    type: Literal["chat.message"] = "chat.message"
    sender: Role
    sender_name: str
    text: str
    sent_at: str


class CallEnded(_Msg):
    """Both sides: the call is over."""

    type: Literal["call.ended"] = "call.ended"
    case_id: str
    ended_by: Literal["customer", "advisor", "system"]
    reason: str = "hangup"


class ErrorMessage(_Msg):
    """A message could not be accepted; the connection stays open."""

    type: Literal["error"] = "error"
    code: ErrorCode
    message: str
    ref: str | None = None
    field: str | None = None  # e.g. "approval_id" for an invalid_message


class Pong(_Msg):
    """Answer to ``ping``."""

    type: Literal["pong"] = "pong"


class VerifyStarted(_Msg):
    """Both sides: an attempt began with ``total`` challenges. The plan itself is never sent:
    each challenge is revealed by the ``verify.progress`` that shows it (a replayed recording,
    or a helper watching a page, cannot know what comes next)."""

    type: Literal["verify.started"] = "verify.started"
    attempt_id: str
    total: int
    seconds_per_challenge: float


class VerifyProgress(_Msg):
    """Both sides: where the attempt stands; ``guidance`` is a message key or None.

    ``challenge`` names the action only while its instruction is on screen (``phase`` is
    ``challenge``); in ``hold`` (the "hold still" pause before it) it is None."""

    type: Literal["verify.progress"] = "verify.progress"
    attempt_id: str
    phase: Literal["baseline", "hold", "challenge", "analysing"]
    index: int = 0  # the challenge being asked (0-based)
    challenge: str | None = None
    met: int = 0  # how many challenges are done
    total: int = 0  # challenges in the attempt
    guidance: str | None = None
    seconds_left: float = 0.0


class ReasonInfo(BaseModel):
    """One reason of a decision for the advisor: its code (the pages turn it into a sentence,
    ``verify.reason.<code>``), how much it weighed, and the figures it rests on."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    code: str
    severity: Literal["fail", "refer", "note"]
    score: float | None = None  # e.g. the match score, for match.* reasons
    threshold: float | None = None  # the threshold that score was held against


class VerifyResult(_Msg):
    """The outcome of an attempt.

    ``outcome`` ``undecided``: the server could not decide (it fell behind); it does not
    count towards any limit (``counted`` False) and the customer may simply try again.
    ``aborted``: stopped before its decision (hang-up, page closed, advisor); it counts as a
    failure. The customer's copy carries only ``outcome``, ``attempts_left``, ``counted``,
    ``locked`` and ``advice`` (a message key telling them, in plain words, what happened and
    what to do next); the advisor's copy also the reasons, scores, thresholds and images."""

    type: Literal["verify.result"] = "verify.result"
    attempt_id: str
    outcome: Literal["pass", "fail", "refer", "aborted", "undecided"]
    reasons: list[str] = Field(default_factory=list)
    details: list[ReasonInfo] = Field(default_factory=list)
    scores: dict[str, float] = Field(default_factory=dict)
    thresholds: dict[str, float] = Field(default_factory=dict)  # "pass", "refer"
    best_frame_url: str | None = None
    reference_url: str | None = None
    attempts_left: int = 0
    counted: bool = True  # counts towards the per-case and the 24-hour limits
    locked: bool = False  # this result locked verification for the customer
    advice: str | None = None  # e.g. "verify.advice.face"


class ServiceState(_Msg):
    """Customer and advisor of a case: where the service stands (``cases.grants.ServiceStatus``
    as JSON: ``service``, ``step``, ``approval``, ``receipt`` … — never a secret)."""

    type: Literal["service.state"] = "service.state"
    status: dict[str, Any]


class PendingApproval(BaseModel):
    """One approval a supervisor can decide."""

    model_config = ConfigDict(frozen=True)
    id: int
    case: str
    customer: str
    service: str
    advisor: str
    requested_at: str
    attempt_id: str
    best_frame_url: str
    reference_url: str


class ApprovalsPending(_Msg):
    """Supervisors: the approvals waiting for a decision (sent on connect and on change)."""

    type: Literal["approvals.pending"] = "approvals.pending"
    items: list[PendingApproval]


class CobrowseStateMsg(_Msg):
    """Both sides of a call: where co-browsing stands; ``reason`` says why it went off."""

    type: Literal["cobrowse.state"] = "cobrowse.state"
    state: Literal["off", "requested", "on"]
    advisor_name: str = ""
    reason: str | None = None  # declined | stopped_by_customer | stopped_by_advisor | call_ended


class CobrowseEventsOut(_Msg):
    """Advisor: the customer's rrweb events that passed the guard (``cobrowse.events``)."""

    type: Literal["cobrowse.events"] = "cobrowse.events"
    events: list[dict[str, Any]]


class CobrowseSnapshotAsk(_Msg):
    """Customer while sharing: take a fresh full snapshot (the advisor joined late)."""

    type: Literal["cobrowse.snapshot"] = "cobrowse.snapshot"


class CobrowsePointerOut(_Msg):
    """Customer: the advisor's pointer (``name`` is the advisor's display name)."""

    type: Literal["cobrowse.pointer"] = "cobrowse.pointer"
    x: float
    y: float
    name: str


class CobrowseHighlightOut(_Msg):
    """Customer: the element the advisor highlights."""

    type: Literal["cobrowse.highlight"] = "cobrowse.highlight"
    node_id: int | None = None
    selector: str | None = None
    name: str


class CobrowseDrawOut(_Msg):
    """Customer: a stroke the advisor drew."""

    type: Literal["cobrowse.draw"] = "cobrowse.draw"
    points: list[tuple[float, float]]
    name: str


ServerMessage = (
    Welcome
    | QueuePosition
    | QueueSnapshot
    | PresenceState
    | CallStarted
    | WebrtcAnswer
    | ChatMessage
    | CallEnded
    | ErrorMessage
    | Pong
    | VerifyStarted
    | VerifyProgress
    | VerifyResult
    | ServiceState
    | ApprovalsPending
    | CobrowseStateMsg
    | CobrowseEventsOut
    | CobrowseSnapshotAsk
    | CobrowsePointerOut
    | CobrowseHighlightOut
    | CobrowseDrawOut
)


# Bytes a frame may take, by its type: co-browse event batches are the big ones (a page's full
# snapshot), an SDP offer up to 60,000 characters, chat 2,000 characters (up to 12 bytes each
# when a client escapes them all), every other message small. The codec's ``max_bytes`` caps
# all of them but the event batches.
FRAME_BYTES = {
    "cobrowse.events": COBROWSE_MAX_BYTES,
    "webrtc.offer": 64 * 1024,
    "chat.send": 32 * 1024,
}
SMALL_FRAME_BYTES = 8 * 1024
# A frame names its type at its head, as the pages write them (``{"v":1,"type":…}``): up to four
# plain members first. Only such a frame may be larger than ``max_bytes``; its size is checked
# against its type's limit before anything is parsed.
_HEAD_CHARS = 512
_HEAD = re.compile(
    r'\s*\{\s*(?:"\w{1,16}"\s*:\s*(?:-?[0-9]{1,20}|true|false|null|"[^"\\]{0,64}")\s*,\s*){0,4}'
    r'"type"\s*:\s*"([a-z.]{1,32})"',
    re.ASCII,
)


def declared_type(raw: str | bytes) -> str | None:
    """The client type a frame names at its head (cheap: the first 512 characters), or None."""
    head = raw[:_HEAD_CHARS]
    found = _HEAD.match(head if isinstance(head, str) else head.decode("utf-8", "replace"))
    kind = found.group(1) if found else None
    return kind if kind in CLIENT_TYPES else None


def load_json(data: bytes) -> Any:
    """Parse UTF-8 JSON with pydantic-core's parser, bounded: it refuses nesting deeper than
    200 levels (no RecursionError), lone surrogates, NaN and numbers of more than 4,300 digits,
    each as a :class:`ProtocolError` with its own code."""
    try:
        return from_json(data, allow_inf_nan=False)
    except ValueError as err:
        reason = str(err)
        if reason.startswith("recursion limit exceeded"):
            raise ProtocolError(ErrorCode.TOO_DEEP, "message nests too deeply") from err
        if reason.startswith("number out of range"):
            raise ProtocolError(ErrorCode.NUMBER_TOO_LARGE, "a number has too many digits") from err
        raise ProtocolError(ErrorCode.BAD_JSON, f"message is not valid JSON: {reason}") from err


def _too_large(size: int, limit: int, ref: str | None) -> ProtocolError:
    return ProtocolError(ErrorCode.TOO_LARGE, f"message of {size} bytes exceeds {limit}", ref)


class Codec:
    """Parses client messages and encodes server messages (one ``TypeAdapter``, built once)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._adapter: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)

    def limit(self, kind: str | None) -> int:
        """Bytes a frame of type ``kind`` may take (``None``: a type not known yet)."""
        if kind == "cobrowse.events":
            return max(self.max_bytes, COBROWSE_MAX_BYTES)
        if kind is None:
            return self.max_bytes
        return min(self.max_bytes, FRAME_BYTES.get(kind, SMALL_FRAME_BYTES))

    def parse(self, raw: str | bytes) -> ClientMessage:
        """Parse one client frame or raise :class:`ProtocolError`.

        A frame over its type's limit (:meth:`limit`) is refused before it is parsed when it
        names its type at its head, else once parsed (it is then at most ``max_bytes``)."""
        declared = declared_type(raw)
        data = self._bytes(raw, self.limit(declared), declared)
        msg = load_json(data)
        if not isinstance(msg, dict):
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "message must be a JSON object")
        kind = msg.get("type")
        ref = kind if isinstance(kind, str) and kind in CLIENT_TYPES else None
        if ref is None:
            shown = repr(kind)[:40] if isinstance(kind, str) else type(kind).__name__
            raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {shown}")
        if len(data) > self.limit(ref):
            raise _too_large(len(data), self.limit(ref), ref)
        if msg.get("v", PROTOCOL_VERSION) != PROTOCOL_VERSION:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_VERSION,
                f"protocol version {str(msg.get('v'))[:20]} is not supported, "
                f"use {PROTOCOL_VERSION}",
                ref,
            )
        try:
            return self._adapter.validate_python(msg)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"][1:]) or None
            text = f"{(where or 'message')[:64]}: {first['msg']}"
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, text, ref, where) from err

    @staticmethod
    def _bytes(raw: str | bytes, limit: int, ref: str | None) -> bytes:
        """The frame as UTF-8, refused when over ``limit`` (a character is at least a byte, so
        an overlong text is refused before it is encoded)."""
        if len(raw) > limit:
            raise _too_large(len(raw), limit, ref)
        if isinstance(raw, bytes):
            return raw
        try:
            data = raw.encode("utf-8")
        except UnicodeEncodeError as err:  # lone surrogates: not text a socket can carry
            raise ProtocolError(ErrorCode.BAD_JSON, "message is not UTF-8 text") from err
        if len(data) > limit:
            raise _too_large(len(data), limit, ref)
        return data

    @staticmethod
    def encode(msg: ServerMessage) -> str:
        """Serialise one server message."""
        return msg.model_dump_json()
