"""Advisor presence: an explicit state machine per advisor."""

from __future__ import annotations

from enum import StrEnum


class PresenceStatus(StrEnum):
    """Where an advisor stands."""

    OFFLINE = "offline"
    AVAILABLE = "available"
    AWAY = "away"
    IN_CALL = "in_call"


_S = PresenceStatus
TRANSITIONS: dict[PresenceStatus, frozenset[PresenceStatus]] = {
    _S.OFFLINE: frozenset({_S.AVAILABLE, _S.AWAY}),
    _S.AVAILABLE: frozenset({_S.AWAY, _S.IN_CALL, _S.OFFLINE}),
    _S.AWAY: frozenset({_S.AVAILABLE, _S.OFFLINE}),
    _S.IN_CALL: frozenset({_S.AVAILABLE, _S.AWAY, _S.OFFLINE}),
}


class InvalidPresenceTransition(Exception):
    """An advisor cannot move from their current presence to the one asked."""

    def __init__(self, current: PresenceStatus, wanted: PresenceStatus) -> None:
        super().__init__(f'Cannot go to "{wanted}" in presence state "{current}"')
        self.current = current
        self.wanted = wanted


class Presence:
    """Presence of every advisor on this node."""

    def __init__(self) -> None:
        self._status: dict[int, PresenceStatus] = {}

    def get(self, staff_id: int) -> PresenceStatus:
        """Current status (offline when unknown)."""
        return self._status.get(staff_id, PresenceStatus.OFFLINE)

    def move(self, staff_id: int, wanted: PresenceStatus) -> PresenceStatus:
        """Change status, checking the transition table; same status is a no-op."""
        current = self.get(staff_id)
        if wanted == current:
            return current
        if wanted not in TRANSITIONS[current]:
            raise InvalidPresenceTransition(current, wanted)
        if wanted is PresenceStatus.OFFLINE:
            self._status.pop(staff_id, None)
        else:
            self._status[staff_id] = wanted
        return wanted

    def available(self) -> list[int]:
        """Advisors ready for a call."""
        return [k for k, v in self._status.items() if v is PresenceStatus.AVAILABLE]

    def count(self, status: PresenceStatus) -> int:
        """How many advisors are in ``status``."""
        return sum(1 for v in self._status.values() if v is status)
