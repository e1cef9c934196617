"""Co-browsing's pure core: the state machine, the guard over rrweb events, the stored stream.

The customer's page records itself with rrweb (``maskAllInputs``, secure panels blocked) and
sends the events through our server. The page is not trusted: :class:`EventGuard` checks every
event before it is relayed or stored and drops any that carries an input value — a typed value
that is not all mask characters, a field's ``value`` attribute that is not masked, or anything
that appears inside a blocked element (rrweb sends a blocked element as an empty placeholder, so
a node inside one is a leak). Everything here is synchronous and cheap (a walk over the event's
JSON); :mod:`cases.cobrowse_desk` runs it on the loop and does the I/O.

Decisions (docs/pages.md "Co-browsing"):

* ``isChecked`` of a checkbox or radio passes: a box's state is not something typed, and rrweb
  does not mask it; its ``text`` is the box's static ``value`` and passes for a known box only.
* A field's ``value`` must be masked on ``input`` (every type but submit, button, reset, image,
  checkbox, radio — their value is their label), ``textarea`` and ``select``, and on an element
  the guard has not seen (a ``progress`` bar's value passes); an ``option`` must not say
  ``selected``; a text node inside a ``textarea`` must be masked.
* Event types other than 0–4 (custom and plugin events: a console log plugin would leak) and the
  incremental sources canvas (9), font (10) and log (11) are dropped.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from cases.errors import InvalidTransition

log = logging.getLogger(__name__)

MASK = "*"
BLOCK_CLASSES = frozenset({"cb-block", "rr-block"})
MAX_EVENT_BYTES = 512 * 1024
MAX_STREAM_BYTES = 10 * 1024 * 1024
MAX_DEPTH = 200  # a snapshot nested deeper than any real page is refused, not recursed into

# rrweb's EventType and IncrementalSource numbers.
FULL_SNAPSHOT, INCREMENTAL = 2, 3
ALLOWED_TYPES = frozenset({0, 1, 2, 3, 4})
MUTATION, INPUT = 0, 5
REFUSED_SOURCES = frozenset({9, 10, 11})
UNMASKED_INPUT_TYPES = frozenset({"submit", "button", "reset", "image", "checkbox", "radio"})
BOX_TYPES = frozenset({"checkbox", "radio"})
NODE_ELEMENT, NODE_TEXT = 2, 3


class CobrowseState(StrEnum):
    """Co-browsing in one call."""

    OFF = "off"
    REQUESTED = "requested"
    ON = "on"


_S = CobrowseState
COBROWSE_TRANSITIONS: dict[CobrowseState, frozenset[CobrowseState]] = {
    _S.OFF: frozenset({_S.REQUESTED}),
    _S.REQUESTED: frozenset({_S.ON, _S.OFF}),
    _S.ON: frozenset({_S.OFF}),
}


def check_cobrowse_move(current: CobrowseState, wanted: CobrowseState) -> None:
    """Raise :class:`InvalidTransition` naming ``current`` unless the move is allowed."""
    if wanted not in COBROWSE_TRANSITIONS[current]:
        raise InvalidTransition("cobrowse", current.value, wanted.value)


def is_masked(text: object) -> bool:
    """Whether ``text`` is empty or nothing but mask characters (what rrweb sends for a field)."""
    return isinstance(text, str) and text.strip(MASK) == ""


class Leak(Exception):
    """An event carries something the advisor must not see; ``reason`` is safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the guard made of one event: ``reason`` is None when it passes."""

    reason: str | None
    size: int
    line: str = ""  # the event as one JSON line (only for events that pass)


def _classes(attrs: dict[str, Any]) -> set[str]:
    value = attrs.get("class")
    return set(value.split()) if isinstance(value, str) else set()


@dataclass(slots=True)
class EventGuard:
    """Checks one customer's rrweb stream. It remembers which node ids are form fields and which
    are blocked placeholders (from snapshots and added nodes) to judge later events."""

    max_event_bytes: int = MAX_EVENT_BYTES
    fields: dict[int, str] = field(default_factory=dict)  # element id → "input:<type>" | tag
    blocked: set[int] = field(default_factory=set)
    dropped: Counter[str] = field(default_factory=Counter)

    def check(self, event: dict[str, Any]) -> Verdict:
        """Judge one event (and learn its nodes when it passes)."""
        line = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
        size = len(line.encode())
        try:
            if size > self.max_event_bytes:
                raise Leak("too_large")
            self._inspect(event)
        except Leak as leak:
            self.dropped[leak.reason] += 1
            return Verdict(leak.reason, size)
        return Verdict(None, size, line)

    def _inspect(self, event: dict[str, Any]) -> None:
        kind, data = event.get("type"), event.get("data")
        if kind not in ALLOWED_TYPES or not isinstance(data, dict):
            raise Leak("event_type")
        if kind == FULL_SNAPSHOT:
            found_fields: dict[int, str] = {}
            found_blocked: set[int] = set()
            _walk(data.get("node"), None, found_fields, found_blocked, 0)
            self.fields, self.blocked = found_fields, found_blocked
        elif kind == INCREMENTAL:
            source = data.get("source")
            if source in REFUSED_SOURCES:
                raise Leak("source")
            if source == INPUT:
                self._input(data)
            elif source == MUTATION:
                self._mutation(data)

    def _input(self, data: dict[str, Any]) -> None:
        node_id = data.get("id")
        if node_id in self.blocked:
            raise Leak("blocked_input")
        kind = self.fields.get(node_id) if isinstance(node_id, int) else None
        if kind is not None and kind.removeprefix("input:") in BOX_TYPES:
            return  # a box's text is its static value; isChecked is allowed
        if not is_masked(data.get("text", "")):
            raise Leak("input_value")

    def _mutation(self, data: dict[str, Any]) -> None:
        found_fields, found_blocked = dict(self.fields), set(self.blocked)
        for add in _list(data.get("adds")):
            parent = add.get("parentId") if isinstance(add, dict) else None
            if parent in found_blocked:
                raise Leak("inside_block")
            node = add.get("node") if isinstance(add, dict) else None
            parent_kind = found_fields.get(parent) if isinstance(parent, int) else None
            _walk(node, parent_kind, found_fields, found_blocked, 0)
        for change in _list(data.get("attributes")):
            self._attributes(change, found_fields, found_blocked)
        for text in _list(data.get("texts")):
            if not isinstance(text, dict) or text.get("id") in found_blocked:
                raise Leak("inside_block")
        self.fields, self.blocked = found_fields, found_blocked

    @staticmethod
    def _attributes(change: object, fields: dict[int, str], blocked: set[int]) -> None:
        if not isinstance(change, dict):
            raise Leak("malformed")
        node_id, attrs = change.get("id"), change.get("attributes")
        if not isinstance(attrs, dict):
            raise Leak("malformed")
        kind = fields.get(node_id) if isinstance(node_id, int) else None
        # A value set on an element the guard never saw is treated as a field's.
        if "value" in attrs and (kind is None or _needs_mask(kind)):
            if not is_masked(attrs["value"] or ""):
                raise Leak("field_value")
        if kind == "option" and attrs.get("selected") not in (None, False):
            raise Leak("option_selected")
        if isinstance(node_id, int) and node_id not in blocked and BLOCK_CLASSES & _classes(attrs):
            blocked.add(node_id)


def _list(value: object) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise Leak("malformed")
    return value


def _needs_mask(kind: str) -> bool:
    if kind.startswith("input:"):
        return kind.removeprefix("input:") not in UNMASKED_INPUT_TYPES
    return kind in ("textarea", "select")


def _field_kind(tag: str, attrs: dict[str, Any]) -> str | None:
    if tag == "input":
        kind = attrs.get("type")
        return "input:" + (kind.lower() if isinstance(kind, str) else "text")
    if tag in ("textarea", "select", "option"):
        return tag
    return None


def _walk(
    node: object, parent_kind: str | None, fields: dict[int, str], blocked: set[int], depth: int
) -> None:
    """Check one serialized node and its children (rrweb-snapshot's JSON)."""
    if node is None:
        return
    if not isinstance(node, dict) or depth > MAX_DEPTH:
        raise Leak("malformed")
    children = _list(node.get("childNodes"))
    node_id = node.get("id")
    if node.get("type") == NODE_TEXT:
        if parent_kind == "textarea" and not is_masked(node.get("textContent", "")):
            raise Leak("field_value")
        return
    kind: str | None = None
    if node.get("type") == NODE_ELEMENT:
        tag = str(node.get("tagName", "")).lower()
        attrs = node.get("attributes") or {}
        if not isinstance(attrs, dict):
            raise Leak("malformed")
        kind = _field_kind(tag, attrs)
        if kind is not None and "value" in attrs and _needs_mask(kind):
            if not is_masked(attrs["value"]):
                raise Leak("field_value")
        if kind == "option" and attrs.get("selected") not in (None, False):
            raise Leak("option_selected")
        if BLOCK_CLASSES & _classes(attrs):
            if children:
                raise Leak("inside_block")
            if isinstance(node_id, int):
                blocked.add(node_id)
        if isinstance(node_id, int):
            fields[node_id] = kind or tag
    for child in children:
        _walk(child, kind, fields, blocked, depth + 1)


@dataclass(slots=True)
class StoredStream:
    """The sanitised stream of one case as JSON lines, bounded: beyond ``max_bytes`` it stops
    storing (and says so once) but the relay goes on."""

    started_at: datetime
    max_bytes: int = MAX_STREAM_BYTES
    lines: list[str] = field(default_factory=list)
    size: int = 0
    full: bool = False

    def add(self, line: str, size: int) -> bool:
        """Keep one event's line; False once the bound is reached."""
        if self.full or self.size + size + 1 > self.max_bytes:
            self.full = True
            return False
        self.lines.append(line)
        self.size += size + 1
        return True

    def to_bytes(self) -> bytes:
        """The stream as JSON lines (UTF-8)."""
        return "".join(line + "\n" for line in self.lines).encode()
