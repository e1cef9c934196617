"""The hash chain of the audit log: canonical form, hashes and the walk that checks them.

Pure functions and one small stateful walker; no database, no I/O (``store.audit`` and
``store.checkpoints`` are the edges).

Every event carries ``seq`` (1, 2, 3 … without gaps), ``prev_hash`` (the ``hash`` of event
``seq - 1``; 64 zeros for event 1) and::

    hash = sha256(prev_hash ‖ canonical_json(event)).hexdigest()

where ``prev_hash`` is taken as its 64 ASCII hex characters and ``canonical_json`` is the UTF-8
JSON object of every stored field — ``seq``, ``at`` (ISO 8601 in UTC with microseconds, e.g.
``2026-12-02T09:30:00.123456+00:00``), ``actor_kind``, ``actor_id``, ``case_id``, ``grant_id``,
``action``, ``outcome`` and ``detail`` (parsed back to an object) — with sorted keys, no
whitespace and non-ASCII characters as they are. An auditor can recompute one hash with
``printf '%s%s' "$prev_hash" "$json" | sha256sum``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime

GENESIS = "0" * 64


@dataclass(frozen=True, slots=True)
class ChainEvent:
    """One stored event as the chain sees it: the fields the hash covers, and its two links."""

    seq: int
    at: datetime
    actor_kind: str
    actor_id: int | None
    case_id: int | None
    grant_id: int | None
    action: str
    outcome: str
    detail: str  # the stored JSON text
    prev_hash: str = GENESIS
    hash: str = ""


@dataclass(frozen=True, slots=True)
class Broken:
    """The first place where the log is not what was written.

    ``kind`` is one of ``seq_gap``, ``seq_order``, ``prev_hash_mismatch``, ``hash_mismatch``,
    ``checkpoint_key``, ``checkpoint_signature``, ``checkpoint_missing_event``,
    ``checkpoint_hash_mismatch`` or ``artifact`` (a check of something an event refers to).
    """

    seq: int
    kind: str
    reason: str


def format_at(at: datetime) -> str:
    """``at`` in UTC, ISO 8601 with microseconds (a naive time is UTC: SQLite drops the zone)."""
    aware = at if at.tzinfo else at.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="microseconds")


def canonical_json(event: ChainEvent) -> bytes:
    """The bytes the event's hash covers; ``ValueError`` when the stored detail is not JSON."""
    fields = {
        "seq": event.seq,
        "at": format_at(event.at),
        "actor_kind": event.actor_kind,
        "actor_id": event.actor_id,
        "case_id": event.case_id,
        "grant_id": event.grant_id,
        "action": event.action,
        "outcome": event.outcome,
        "detail": json.loads(event.detail),
    }
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def event_hash(prev_hash: str, event: ChainEvent) -> str:
    """``sha256(prev_hash ‖ canonical_json(event))`` as 64 hex characters."""
    return hashlib.sha256(prev_hash.encode("ascii") + canonical_json(event)).hexdigest()


def _recomputed(event: ChainEvent) -> str | None:
    try:
        return event_hash(event.prev_hash, event)
    except (ValueError, UnicodeEncodeError):  # detail no longer JSON, prev_hash not ASCII
        return None


class ChainWalker:
    """Checks events fed in ``seq`` order and remembers the first broken link.

    ``watch`` names the ``seq`` of each checkpoint: the walker keeps those events' stored
    hashes in ``hashes`` for the checkpoints to be compared with.
    """

    def __init__(self, watch: frozenset[int] = frozenset()) -> None:
        self.events = 0
        self.first_broken: Broken | None = None
        self.hashes: dict[int, str] = {}
        self._watch = watch
        self._seq = 0
        self._hash = GENESIS

    def feed(self, event: ChainEvent) -> None:
        """Check one event against the one before it."""
        self.events += 1
        if event.seq in self._watch:
            self.hashes.setdefault(event.seq, event.hash)
        if self.first_broken is None:
            self.first_broken = self._check(event)
        self._seq, self._hash = event.seq, event.hash

    def _check(self, event: ChainEvent) -> Broken | None:
        # Order matters: a gap or a foreign link says more than the hash mismatch it causes.
        expected = self._seq + 1
        if event.seq > expected:
            return Broken(
                expected,
                "seq_gap",
                f"seq gap after {self._seq}: the next event is {event.seq} (events deleted)",
            )
        if event.seq < expected:
            return Broken(event.seq, "seq_order", f"seq {event.seq} comes again after {self._seq}")
        if event.prev_hash != self._hash:
            return Broken(
                event.seq,
                "prev_hash_mismatch",
                f"prev_hash mismatch at seq {event.seq}: it is not the hash of event "
                f"{self._seq} (events reordered or inserted)",
            )
        if _recomputed(event) != event.hash:
            return Broken(
                event.seq,
                "hash_mismatch",
                f"hash mismatch at seq {event.seq}: a stored field of the event was changed",
            )
        return None
