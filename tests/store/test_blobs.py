"""The local blob store: content-addressed, atomic, safe against malformed keys."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from store.blobs import BlobStore, LocalBlobStore
from store.errors import BlobCorrupt, BlobNotFound, InvalidBlobKey


@pytest.fixture
def blobs(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


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
