"""The waiting queue: first in, first out (routing by skill and priority comes later)."""

from __future__ import annotations

from signaling.messages import QueueEntry


class WaitingQueue:
    """Customers waiting for an advisor, in arrival order, keyed by case id."""

    def __init__(self, average_handle_seconds: int) -> None:
        self._entries: dict[str, QueueEntry] = {}
        self.average_handle_seconds = average_handle_seconds

    def join(self, entry: QueueEntry) -> bool:
        """Add a customer; False when the case is already waiting (its place is kept)."""
        if entry.case_id in self._entries:
            return False
        self._entries[entry.case_id] = entry
        return True

    def remove(self, case_id: str) -> QueueEntry | None:
        """Take a case out of the queue (accepted or left); None when it was not waiting."""
        return self._entries.pop(case_id, None)

    def __contains__(self, case_id: object) -> bool:
        return case_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[QueueEntry]:
        """Waiting customers, first in line first."""
        return list(self._entries.values())

    def position(self, case_id: str) -> int | None:
        """1-based place in line, or None when not waiting."""
        for index, key in enumerate(self._entries, start=1):
            if key == case_id:
                return index
        return None

    def estimated_wait(self, position: int, advisors: int) -> int:
        """Seconds until this position is served, from the average handling time."""
        return (position * self.average_handle_seconds) // max(1, advisors)
