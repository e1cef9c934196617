"""The local blob store: content-addressed, atomic, safe against malformed keys."""

from __future__ import annotations

import asyncio
import hashlib
import random
from pathlib import Path

import pytest

from store.blobs import BlobStore, LocalBlobStore
from store.errors import BlobCorrupt, BlobNotFound, BlobRangeError, InvalidBlobKey

TEN = b"0123456789"
RANGES = [(0, 4), (3, 7), (8, 100), (0, 10)]  # first bytes, middle, past the end, whole
BAD_RANGES = [(-1, 3), (5, 5), (6, 2), (10, 12), (11, 20)]


@pytest.fixture
def blobs(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    """A 5 MiB (and a bit) file of random bytes, the size of a short call recording."""
    path = tmp_path / "call.webm"
    path.write_bytes(random.Random(5).randbytes(5 * 1024 * 1024 + 1234))
    return path


async def test_put_returns_sha256_and_get_returns_bytes(blobs: LocalBlobStore) -> None:
    key = await blobs.put(b"hello")
    assert key == hashlib.sha256(b"hello").hexdigest()
    assert await blobs.get(key) == b"hello"
    assert await blobs.exists(key)


async def test_layout_uses_two_char_folders(blobs: LocalBlobStore, tmp_path: Path) -> None:
    key = await blobs.put(b"layout")
    assert (tmp_path / "blobs" / key[:2] / key).read_bytes() == b"layout"


async def test_put_is_idempotent_and_leaves_no_temp_files(
    blobs: LocalBlobStore, tmp_path: Path
) -> None:
    first = await blobs.put(b"same")
    second = await blobs.put(b"same")
    assert first == second
    files = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
    assert [p.name for p in files] == [first]


async def test_missing_blob(blobs: LocalBlobStore) -> None:
    key = hashlib.sha256(b"never stored").hexdigest()
    assert not await blobs.exists(key)
    with pytest.raises(BlobNotFound):
        await blobs.get(key)


@pytest.mark.parametrize("key", ["", "abc", "../../etc/passwd", "g" * 64, "a" * 63, "a" * 65])
async def test_malformed_keys_are_refused(blobs: LocalBlobStore, key: str) -> None:
    with pytest.raises(InvalidBlobKey):
        await blobs.get(key)
    with pytest.raises(InvalidBlobKey):
        await blobs.exists(key)
    with pytest.raises(InvalidBlobKey):
        await blobs.size(key)
    with pytest.raises(InvalidBlobKey):
        await blobs.read_range(key, 0, 1)
    with pytest.raises(InvalidBlobKey):
        await blobs.delete(key)
    with pytest.raises(InvalidBlobKey):
        await blobs.verify(key)


async def test_uppercase_key_is_the_same_blob(blobs: LocalBlobStore) -> None:
    key = await blobs.put(b"case")
    assert await blobs.get(key.upper()) == b"case"


async def test_tampered_blob_is_detected(blobs: LocalBlobStore, tmp_path: Path) -> None:
    key = await blobs.put(b"original")
    (tmp_path / "blobs" / key[:2] / key).write_bytes(b"tampered")
    with pytest.raises(BlobCorrupt):
        await blobs.get(key)


def test_local_store_satisfies_protocol(blobs: LocalBlobStore) -> None:
    store: BlobStore = blobs
    assert store is blobs


async def test_put_file_stores_a_recording_under_its_sha256(
    blobs: LocalBlobStore, recording: Path, tmp_path: Path
) -> None:
    data = await asyncio.to_thread(recording.read_bytes)
    key = await blobs.put_file(recording)
    assert key == hashlib.sha256(data).hexdigest()
    assert await blobs.put_file(recording) == key
    assert await blobs.get(key) == data
    assert await blobs.size(key) == len(data)
    files = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
    assert [p.name for p in files] == [key]  # no temporary file left behind


@pytest.mark.parametrize(("start", "end"), RANGES)
async def test_read_range(blobs: LocalBlobStore, start: int, end: int) -> None:
    key = await blobs.put(TEN)
    assert await blobs.read_range(key, start, end) == TEN[start:end]


@pytest.mark.parametrize(("start", "end"), BAD_RANGES)
async def test_invalid_range_is_refused(blobs: LocalBlobStore, start: int, end: int) -> None:
    key = await blobs.put(TEN)
    with pytest.raises(BlobRangeError) as err:
        await blobs.read_range(key, start, end)
    assert (err.value.start, err.value.end, err.value.size) == (start, end, len(TEN))


async def test_range_of_an_empty_blob(blobs: LocalBlobStore) -> None:
    key = await blobs.put(b"")
    assert await blobs.size(key) == 0
    assert await blobs.read_range(key, 0, 10) == b""
    with pytest.raises(BlobRangeError):
        await blobs.read_range(key, 1, 10)


async def test_delete_removes_the_blob_and_its_folder(
    blobs: LocalBlobStore, tmp_path: Path
) -> None:
    key = await blobs.put(b"retention is over")
    assert await blobs.delete(key)
    assert not await blobs.exists(key)
    with pytest.raises(BlobNotFound):
        await blobs.get(key)
    assert not (tmp_path / "blobs" / key[:2]).exists()
    assert not await blobs.delete(key)
    assert await blobs.put(b"retention is over") == key  # the folder is made again


async def test_missing_blob_has_no_size_range_or_verdict(blobs: LocalBlobStore) -> None:
    key = hashlib.sha256(b"never stored").hexdigest()
    with pytest.raises(BlobNotFound):
        await blobs.size(key)
    with pytest.raises(BlobNotFound):
        await blobs.read_range(key, 0, 1)
    with pytest.raises(BlobNotFound):
        await blobs.verify(key)


async def test_verify_detects_tampering(
    blobs: LocalBlobStore, recording: Path, tmp_path: Path
) -> None:
    key = await blobs.put_file(recording)
    assert await blobs.verify(key)
    with (tmp_path / "blobs" / key[:2] / key).open("r+b") as fh:
        fh.seek(3 * 1024 * 1024)
        fh.write(b"tampered")
    assert not await blobs.verify(key)
