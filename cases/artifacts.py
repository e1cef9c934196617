"""What the audit log says about a case's stored artifacts: the event names, and which
co-browse streams a case has and which a retention tombstone deleted.

Recordings have rows (``recordings``); a co-browse stream exists only as its ``cobrowse.stored``
event. The readers — the auditor console, ``audit verify``, the export bundle, retention — all
read these events the same way, here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

RECORDING_STORED = "recording.stored"
COBROWSE_STORED = "cobrowse.stored"
TOMBSTONE = "retention.deleted"


def _object(detail: str) -> dict[str, object]:
    parsed = json.loads(detail)
    return parsed if isinstance(parsed, dict) else {}


def listed(detail: str, under: str) -> list[str]:
    """The sha256 keys a tombstone's ``detail`` lists under ``under`` (recordings, cobrowse)."""
    items = _object(detail).get(under, [])
    if not isinstance(items, list):
        return []
    return [str(i["sha256"]) for i in items if isinstance(i, dict) and "sha256" in i]


def streams(events: Iterable[tuple[str, str]]) -> tuple[dict[str, dict[str, object]], set[str]]:
    """From a case's ``(action, detail)`` pairs: its co-browse streams (sha256 → the stored
    event's detail, in order) and the keys tombstones deleted."""
    stored: dict[str, dict[str, object]] = {}
    gone: set[str] = set()
    for action, detail in events:
        if action == TOMBSTONE:
            gone.update(listed(detail, "cobrowse"))
        elif action == COBROWSE_STORED:
            parsed = _object(detail)
            if "sha256" in parsed:
                stored[str(parsed["sha256"])] = parsed
    return stored, gone
