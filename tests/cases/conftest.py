"""Fixtures for the service tests of ``cases``: the real SQL bank of tests/banking."""

from __future__ import annotations

from tests.banking.conftest import banking, blobs, db, world

__all__ = ["banking", "blobs", "db", "world"]
