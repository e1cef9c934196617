"""Model-file helpers shared by the backends."""

from __future__ import annotations

import hashlib
from pathlib import Path

from verification.errors import ModelLoadError


def require_file(path: Path | str) -> Path:
    """``path`` as a ``Path``; a missing file raises ``ModelLoadError`` naming it."""
    resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise ModelLoadError(resolved, "file not found")
    return resolved


def file_version(path: Path) -> str:
    """The first 12 hex digits of the file's sha256: a model version that changes with the bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]
