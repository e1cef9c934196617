"""State machines of cases and calls: an Enum and one transition table each."""

from __future__ import annotations

from enum import StrEnum

from cases.errors import InvalidTransition


class CaseState(StrEnum):
    """Where a customer's request stands."""

    IDENTIFIED = "identified"
    CONSENTED = "consented"
    QUEUED = "queued"
    IN_CALL = "in_call"
    CLOSED = "closed"
    ABANDONED = "abandoned"


class CallState(StrEnum):
    """A call between a customer and an advisor."""

    CONNECTING = "connecting"
    ACTIVE = "active"
    ENDED = "ended"


_C = CaseState
CASE_TRANSITIONS: dict[CaseState, frozenset[CaseState]] = {
    _C.IDENTIFIED: frozenset({_C.CONSENTED, _C.ABANDONED}),
    _C.CONSENTED: frozenset({_C.QUEUED, _C.ABANDONED}),
    _C.QUEUED: frozenset({_C.IN_CALL, _C.ABANDONED}),
    _C.IN_CALL: frozenset({_C.CLOSED}),
    _C.CLOSED: frozenset(),
    _C.ABANDONED: frozenset(),
}

_K = CallState
CALL_TRANSITIONS: dict[CallState, frozenset[CallState]] = {
    _K.CONNECTING: frozenset({_K.ACTIVE, _K.ENDED}),
    _K.ACTIVE: frozenset({_K.ENDED}),
    _K.ENDED: frozenset(),
}


def check_case_move(current: CaseState, wanted: CaseState) -> None:
    """Raise :class:`InvalidTransition` naming ``current`` unless the move is allowed."""
    if wanted not in CASE_TRANSITIONS[current]:
        raise InvalidTransition("case", current.value, wanted.value)


def check_call_move(current: CallState, wanted: CallState) -> None:
    """Raise :class:`InvalidTransition` naming ``current`` unless the move is allowed."""
    if wanted not in CALL_TRANSITIONS[current]:
        raise InvalidTransition("call", current.value, wanted.value)
