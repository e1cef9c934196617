"""Content-addressed blob storage: the key of a blob is the SHA-256 hex digest of its bytes."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

from store.errors import BlobCorrupt, BlobNotFound, InvalidBlobKey

_KEY_RE = re.compile(r"[0-9a-f]{64}")


def blob_key(data: bytes) -> str:
    """Return the key ``data`` is stored under: its SHA-256 as lowercase hex."""
    return hashlib.sha256(data).hexdigest()


def check_key(key: str) -> str:
    """Return ``key`` in canonical (lowercase) form; raise ``InvalidBlobKey`` if it is not one."""
    canonical = key.lower()
    if not _KEY_RE.fullmatch(canonical):
        raise InvalidBlobKey(key)
    return canonical


class BlobStore(Protocol):
    """Where photos, evidence frames and recordings are kept, addressed by their SHA-256."""

    async def put(self, data: bytes) -> str:
        """Store ``data`` and return its key; storing the same bytes again is a no-op."""
        ...

    async def get(self, key: str) -> bytes:
        """Return the bytes stored under ``key``; raise ``BlobNotFound`` if there are none."""
        ...

    async def exists(self, key: str) -> bool:
        """Tell whether a blob is stored under ``key``."""
        ...


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


class LocalBlobStore:
    """A ``BlobStore`` over a local folder: blob ``abcdef…`` lives in ``root/ab/abcdef…``.

    File I/O and hashing run in a worker thread, never on the event loop. Writes are atomic
    (temporary file + rename), so a reader never sees half a blob; reads re-hash the bytes and
    raise ``BlobCorrupt`` when they no longer match the key.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        key = check_key(key)
        return self.root / key[:2] / key

    def _put_sync(self, data: bytes) -> str:
        key = blob_key(data)
        path = self._path(key)
        if not path.is_file():
            _write_atomically(path, data)
        return key

    def _get_sync(self, key: str) -> bytes:
        path = self._path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError as err:
            raise BlobNotFound(key) from err
        if blob_key(data) != path.name:
            raise BlobCorrupt(key)
        return data

    async def put(self, data: bytes) -> str:
        """Store ``data`` and return its SHA-256 hex key (idempotent)."""
        return await asyncio.to_thread(self._put_sync, data)

    async def get(self, key: str) -> bytes:
        """Return the blob's bytes; ``BlobNotFound`` if absent, ``InvalidBlobKey`` if malformed."""
        return await asyncio.to_thread(self._get_sync, key)

    async def exists(self, key: str) -> bool:
        """Tell whether the blob exists; ``InvalidBlobKey`` if the key is malformed."""
        return await asyncio.to_thread(self._path(key).is_file)
