"""Errors of the cases package; ``web/`` maps them to HTTP statuses and WebSocket codes."""

from __future__ import annotations


class CaseError(Exception):
    """Base of every error raised by ``cases``."""


class InvalidTransition(CaseError):
    """A state machine was asked for a move its table does not allow."""

    def __init__(self, machine: str, current: str, wanted: str) -> None:
        super().__init__(f'{machine}: cannot go to "{wanted}" in state "{current}"')
        self.current = current
        self.wanted = wanted


class CaseNotFound(CaseError):
    """No case with that id."""


class IdentificationFailed(CaseError):
    """Name, ID number and card digits do not identify one customer (never says which)."""


class TooManyAttempts(CaseError):
    """Too many failed identifications from this client; try again later."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many attempts; retry after {retry_after} s")
        self.retry_after = retry_after


class UnknownService(CaseError):
    """The service code is not one we offer."""


class NotAllowed(CaseError):
    """The caller may not do this (wrong role, another case, wrong state)."""


class Refused(CaseError):
    """A request the rules of the case refuse; ``code`` is machine-readable (sent to pages)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
