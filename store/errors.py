"""Errors raised by the store package."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every store error."""


class InvalidBlobKey(StoreError, ValueError):
    """A blob key is not a SHA-256 hex digest (64 hex characters)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"invalid blob key {key[:80]!r}: expected 64 hex characters")
        self.key = key


class BlobNotFound(StoreError):
    """No blob is stored under this key."""

    def __init__(self, key: str) -> None:
        super().__init__(f"blob not found: {key}")
        self.key = key


class BlobCorrupt(StoreError):
    """A stored blob's bytes no longer hash to its key (disk damage or tampering)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"blob content does not match its key: {key}")
        self.key = key


class SigningKeyError(StoreError):
    """The audit signing key (or a public key given to verify with) cannot be used."""


class BlobStoreUnavailable(StoreError):
    """The blob store cannot be used: unreachable, credentials refused, no such bucket …

    The message names the endpoint, the bucket and the problem, never a secret.
    """


class BlobRangeError(StoreError, ValueError):
    """A byte range ``[start, end)`` cannot be read from a blob of ``size`` bytes.

    Raised when ``start < 0``, ``end <= start`` or ``start >= size`` for a non-empty blob
    (an HTTP layer answers 416 Range Not Satisfiable).
    """

    def __init__(self, key: str, start: int, end: int, size: int) -> None:
        super().__init__(f"invalid range [{start}, {end}) of blob {key} ({size} bytes)")
        self.key = key
        self.start = start
        self.end = end
        self.size = size
