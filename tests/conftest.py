"""Fixtures shared by every test package."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    """``../shared/data`` (or ``CLOUDBRANCH_SHARED_DATA``); a missing folder fails loudly."""
    path = Path(os.environ.get("CLOUDBRANCH_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not (path / "identity").is_dir():
        pytest.fail(f"shared test data not found at {path} (set CLOUDBRANCH_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real faces and clips in ``../shared/data``."""
    return shared_data_dir()
