"""Advisor presence: every cell of the transition table."""

from __future__ import annotations

import itertools

import pytest

from signaling.presence import (
    TRANSITIONS,
    InvalidPresenceTransition,
    Presence,
    PresenceStatus,
)


def _at(status: PresenceStatus) -> Presence:
    presence = Presence()
    path = {
        PresenceStatus.OFFLINE: [],
        PresenceStatus.AVAILABLE: [PresenceStatus.AVAILABLE],
        PresenceStatus.AWAY: [PresenceStatus.AWAY],
        PresenceStatus.IN_CALL: [PresenceStatus.AVAILABLE, PresenceStatus.IN_CALL],
    }[status]
    for step in path:
        presence.move(1, step)
    return presence


@pytest.mark.parametrize(
    ("current", "wanted"), list(itertools.product(PresenceStatus, PresenceStatus))
)
def test_presence_table(current: PresenceStatus, wanted: PresenceStatus) -> None:
    presence = _at(current)
    if wanted == current or wanted in TRANSITIONS[current]:
        assert presence.move(1, wanted) == wanted
        assert presence.get(1) == wanted
    else:
        with pytest.raises(InvalidPresenceTransition, match=f'state "{current.value}"'):
            presence.move(1, wanted)
        assert presence.get(1) == current


def test_only_available_advisors_are_offered() -> None:
    presence = Presence()
    presence.move(1, PresenceStatus.AVAILABLE)
    presence.move(2, PresenceStatus.AWAY)
    presence.move(3, PresenceStatus.AVAILABLE)
    presence.move(3, PresenceStatus.IN_CALL)
    assert presence.available() == [1]
    assert presence.count(PresenceStatus.IN_CALL) == 1
