"""Which case states let a customer's browser in where."""

from __future__ import annotations

from cases.states import CaseState

# A customer socket serves the waiting room and the call.
CUSTOMER_SOCKET_STATES = frozenset({CaseState.CONSENTED, CaseState.QUEUED, CaseState.IN_CALL})
