"""Every cell of the case and call transition tables."""

from __future__ import annotations

import itertools

import pytest

from cases.errors import InvalidTransition
from cases.states import (
    CALL_TRANSITIONS,
    CASE_TRANSITIONS,
    CallState,
    CaseState,
    check_call_move,
    check_case_move,
)


@pytest.mark.parametrize(("current", "wanted"), list(itertools.product(CaseState, CaseState)))
def test_case_table(current: CaseState, wanted: CaseState) -> None:
    if wanted in CASE_TRANSITIONS[current]:
        check_case_move(current, wanted)
    else:
        with pytest.raises(InvalidTransition, match=f'in state "{current.value}"'):
            check_case_move(current, wanted)


@pytest.mark.parametrize(("current", "wanted"), list(itertools.product(CallState, CallState)))
def test_call_table(current: CallState, wanted: CallState) -> None:
    if wanted in CALL_TRANSITIONS[current]:
        check_call_move(current, wanted)
    else:
        with pytest.raises(InvalidTransition, match=f'in state "{current.value}"'):
            check_call_move(current, wanted)


def test_closed_and_abandoned_cases_are_final() -> None:
    assert CASE_TRANSITIONS[CaseState.CLOSED] == frozenset()
    assert CASE_TRANSITIONS[CaseState.ABANDONED] == frozenset()
    # A call can only be reached through the queue.
    reach_call = [s for s, nxt in CASE_TRANSITIONS.items() if CaseState.IN_CALL in nxt]
    assert reach_call == [CaseState.QUEUED]
