"""Content-addressed blob storage: the key of a blob is the SHA-256 hex digest of its bytes."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import BinaryIO, Protocol

from store.errors import BlobCorrupt, BlobNotFound, BlobRangeError, InvalidBlobKey

_KEY_RE = re.compile(r"[0-9a-f]{64}")

CHUNK_SIZE = 1024 * 1024
"""How much of a file or object is read at a time to hash or copy it."""


def blob_key(data: bytes) -> str:
    """Return the key ``data`` is stored under: its SHA-256 as lowercase hex."""
    return hashlib.sha256(data).hexdigest()


def check_key(key: str) -> str:
    """Return ``key`` in canonical (lowercase) form; raise ``InvalidBlobKey`` if it is not one."""
    canonical = key.lower()
    if not _KEY_RE.fullmatch(canonical):
        raise InvalidBlobKey(key)
    return canonical


def hash_chunks(chunks: Iterable[bytes]) -> str:
    """Return the key of the bytes ``chunks`` yield in turn, without holding them all."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def file_chunks(fh: BinaryIO) -> Iterator[bytes]:
    """The rest of an open file, ``CHUNK_SIZE`` bytes at a time."""
    return iter(partial(fh.read, CHUNK_SIZE), b"")


def hash_file(path: Path) -> str:
    """Return the key the file at ``path`` would be stored under, reading it in chunks."""
    with path.open("rb") as fh:
        return hash_chunks(file_chunks(fh))


def clamp_range(key: str, start: int, end: int, size: int) -> int:
    """Return ``end`` clamped to ``size``; ``BlobRangeError`` if ``[start, end)`` is unreadable.

    A range is unreadable when ``start < 0``, ``end <= start``, or it starts at or past the end
    of a non-empty blob (an empty blob answers ``[0, end)`` with no bytes).
    """
    if start < 0 or end <= start or start > size or (start == size and size > 0):
        raise BlobRangeError(key, start, end, size)
    return min(end, size)


class BlobStore(Protocol):
    """Where photos, evidence frames and recordings are kept, addressed by their SHA-256.

    Every method raises ``InvalidBlobKey`` for a key that is not 64 hex characters.
    """

    async def put(self, data: bytes) -> str:
        """Store ``data`` and return its key; storing the same bytes again is a no-op."""
        ...

    async def put_file(self, path: Path) -> str:
        """Store the bytes of the file at ``path`` without reading it whole; return the key.

        Idempotent like ``put``. The file must not change while it is being stored; ``OSError``
        if it cannot be read.
        """
        ...

    async def get(self, key: str) -> bytes:
        """Return the bytes stored under ``key``; raise ``BlobNotFound`` if there are none.

        The whole blob is re-hashed: ``BlobCorrupt`` if it no longer matches ``key``.
        """
        ...

    async def exists(self, key: str) -> bool:
        """Tell whether a blob is stored under ``key``."""
        ...

    async def size(self, key: str) -> int:
        """Return the blob's length in bytes; ``BlobNotFound`` if absent."""
        ...

    async def read_range(self, key: str, start: int, end: int) -> bytes:
        """Return bytes ``[start, end)`` of the blob, ``end`` clamped to its size.

        ``BlobNotFound`` if absent; ``BlobRangeError`` if ``start < 0``, ``end <= start`` or
        ``start`` is at or past the end of a non-empty blob. Unlike ``get`` this does NOT check
        the content against the key (a part cannot be checked); use ``verify`` for that.
        """
        ...

    async def delete(self, key: str) -> bool:
        """Remove the blob; True if it was there, False if there was nothing to remove."""
        ...

    async def verify(self, key: str) -> bool:
        """Re-hash the stored bytes in chunks: True if they still match ``key``.

        ``BlobNotFound`` if absent. Memory stays small whatever the blob's size.
        """
        ...


def _move_into(tmp: Path, path: Path, attempts: int = 3) -> None:
    """Rename ``tmp`` to ``path``, making ``path``'s folder first.

    A concurrent ``delete`` may remove that folder once it is empty, between the ``mkdir`` and
    the rename: then the folder is made again.
    """
    for attempt in range(attempts):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(tmp, path)
            return
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise


def _write_atomically(staging: Path, write: Callable[[BinaryIO], Path]) -> Path:
    """Fill a temporary file in ``staging`` with ``write``, fsync it, rename it into place.

    ``write`` returns where the file belongs (known only once it is written, for a file whose
    hash is computed while copying); that path is returned. ``staging`` is on the same file
    system, so the rename is atomic: a reader never sees half a blob.
    """
    staging.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=staging, prefix=".tmp-")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            path = write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        _move_into(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


class LocalBlobStore:
    """A ``BlobStore`` over a local folder: blob ``abcdef…`` lives in ``root/ab/abcdef…``.

    File I/O and hashing run in a worker thread, never on the event loop. Writes go to a
    temporary file in ``root`` and are renamed into place, so a reader never sees half a blob;
    ``get`` re-hashes the bytes and raises ``BlobCorrupt`` when they no longer match the key.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        key = check_key(key)
        return self.root / key[:2] / key

    @contextlib.contextmanager
    def _open(self, key: str) -> Iterator[BinaryIO]:
        path = self._path(key)
        try:
            fh = path.open("rb")
        except FileNotFoundError as err:
            raise BlobNotFound(path.name) from err
        with fh:
            yield fh

    def _put_sync(self, data: bytes) -> str:
        key = blob_key(data)
        path = self._path(key)
        if not path.is_file():

            def write(fh: BinaryIO) -> Path:
                fh.write(data)
                return path

            _write_atomically(self.root, write)
        return key

    def _put_file_sync(self, source: Path) -> str:
        def copy_hashing(fh: BinaryIO) -> Path:  # one pass: the key is of the bytes copied
            digest = hashlib.sha256()
            with source.open("rb") as src:
                for chunk in file_chunks(src):
                    digest.update(chunk)
                    fh.write(chunk)
            return self._path(digest.hexdigest())

        return _write_atomically(self.root, copy_hashing).name

    def _get_sync(self, key: str) -> bytes:
        with self._open(key) as fh:
            data = fh.read()
        if blob_key(data) != check_key(key):
            raise BlobCorrupt(key)
        return data

    def _size_sync(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError as err:
            raise BlobNotFound(check_key(key)) from err

    def _read_range_sync(self, key: str, start: int, end: int) -> bytes:
        with self._open(key) as fh:
            end = clamp_range(check_key(key), start, end, os.fstat(fh.fileno()).st_size)
            fh.seek(start)
            return fh.read(end - start)

    def _delete_sync(self, key: str) -> bool:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        with contextlib.suppress(OSError):  # still holds other blobs (or is being written to)
            path.parent.rmdir()
        return True

    def _verify_sync(self, key: str) -> bool:
        with self._open(key) as fh:
            return hash_chunks(file_chunks(fh)) == check_key(key)

    async def put(self, data: bytes) -> str:
        """Store ``data`` and return its SHA-256 hex key (idempotent)."""
        return await asyncio.to_thread(self._put_sync, data)

    async def put_file(self, path: Path) -> str:
        """Copy the file into the store, hashing it on the way; return its key (idempotent)."""
        return await asyncio.to_thread(self._put_file_sync, path)

    async def get(self, key: str) -> bytes:
        """Return the blob's bytes; ``BlobNotFound`` if absent, ``BlobCorrupt`` if damaged."""
        return await asyncio.to_thread(self._get_sync, key)

    async def exists(self, key: str) -> bool:
        """Tell whether the blob exists; ``InvalidBlobKey`` if the key is malformed."""
        return await asyncio.to_thread(self._path(key).is_file)

    async def size(self, key: str) -> int:
        """Return the blob's length in bytes; ``BlobNotFound`` if absent."""
        return await asyncio.to_thread(self._size_sync, key)

    async def read_range(self, key: str, start: int, end: int) -> bytes:
        """Return bytes ``[start, end)`` (clamped), unchecked against the key; see ``BlobStore``."""
        return await asyncio.to_thread(self._read_range_sync, key, start, end)

    async def delete(self, key: str) -> bool:
        """Remove the blob and its emptied folder; False if it was not there."""
        return await asyncio.to_thread(self._delete_sync, key)

    async def verify(self, key: str) -> bool:
        """Tell whether the stored bytes still hash to ``key``; ``BlobNotFound`` if absent."""
        return await asyncio.to_thread(self._verify_sync, key)
