"""The S3 blob store against moto's S3 server on loopback: the real boto3 client over a socket."""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from aiohttp.test_utils import TestServer
from moto.server import ThreadedMotoServer  # type: ignore[import-untyped]

from store.config import S3Config
from store.errors import (
    BlobCorrupt,
    BlobNotFound,
    BlobRangeError,
    BlobStoreUnavailable,
    InvalidBlobKey,
)
from store.s3 import S3BlobStore
from tests.store.test_blobs import BAD_RANGES, RANGES, TEN
from tests.web.conftest import make_settings, running_world
from web.app import create_app
from web.keys import BLOBS

SECRET = "not-a-real-secret-key"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's S3-compatible HTTP server on a free loopback port, for the whole session."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    _raw_client(endpoint).list_buckets()  # moto loads its S3 backend now, not in a test's loop
    yield endpoint
    server.stop()


class _Refuses(BaseHTTPRequestHandler):
    """Answers every request the way S3 answers an unknown access key."""

    def _refuse(self) -> None:
        body = (
            b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidAccessKeyId</Code>'
            b"<Message>The AWS Access Key Id you provided does not exist.</Message></Error>"
        )
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET = do_PUT = _refuse

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def refusing_endpoint() -> Iterator[str]:
    """An S3 endpoint on loopback that refuses every credential."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refuses)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


def _raw_client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key=SECRET,
    )


async def _raw(endpoint: str, method: str, **kwargs: Any) -> Any:
    """One call of a plain boto3 client, in a thread (boto3 blocks)."""
    return await asyncio.to_thread(lambda: getattr(_raw_client(endpoint), method)(**kwargs))


def _config(endpoint: str, bucket: str = "") -> S3Config:
    return S3Config(endpoint, bucket or f"t-{uuid.uuid4().hex[:16]}", "test", SECRET)


@pytest.fixture
async def s3(moto_endpoint: str) -> Any:
    store = S3BlobStore(_config(moto_endpoint), part_size=MIB * 5)  # S3's smallest part
    await store.open()
    yield store
    await store.close()


MIB = 1024 * 1024


async def test_round_trip_and_idempotent_put(s3: S3BlobStore) -> None:
    key = await s3.put(b"hello")
    assert key == hashlib.sha256(b"hello").hexdigest()
    assert await s3.get(key) == b"hello"
    assert await s3.get(key.upper()) == b"hello"
    assert await s3.exists(key)
    assert await s3.put(b"hello") == key
    listed = await _raw(s3.config.endpoint, "list_objects_v2", Bucket=s3.config.bucket)
    assert [o["Key"] for o in listed["Contents"]] == [key]


async def test_missing_and_malformed_keys(s3: S3BlobStore) -> None:
    missing = hashlib.sha256(b"never stored").hexdigest()
    assert not await s3.exists(missing)
    with pytest.raises(BlobNotFound):
        await s3.get(missing)
    with pytest.raises(InvalidBlobKey):
        await s3.get("../etc/passwd")
    with pytest.raises(BlobNotFound):
        await s3.size(missing)
    with pytest.raises(BlobNotFound):
        await s3.read_range(missing, 0, 1)
    with pytest.raises(BlobNotFound):
        await s3.verify(missing)
    for bad in ("../etc/passwd", "a" * 63):
        with pytest.raises(InvalidBlobKey):
            await s3.size(bad)
        with pytest.raises(InvalidBlobKey):
            await s3.read_range(bad, 0, 1)
        with pytest.raises(InvalidBlobKey):
            await s3.delete(bad)
        with pytest.raises(InvalidBlobKey):
            await s3.verify(bad)


async def test_open_creates_the_bucket_and_reopens_it(moto_endpoint: str) -> None:
    cfg = _config(moto_endpoint)
    first = S3BlobStore(cfg)
    await first.open()
    names = [b["Name"] for b in (await _raw(moto_endpoint, "list_buckets"))["Buckets"]]
    assert cfg.bucket in names
    key = await first.put(b"kept")
    await first.close()
    second = S3BlobStore(cfg)  # the bucket exists now: open() keeps it and its blobs
    await second.open()
    assert await second.get(key) == b"kept"
    await second.close()


async def test_corrupted_object_is_detected(s3: S3BlobStore) -> None:
    key = await s3.put(b"original evidence")
    await _raw(s3.config.endpoint, "put_object", Bucket=s3.config.bucket, Key=key, Body=b"tampered")
    with pytest.raises(BlobCorrupt):
        await s3.get(key)


async def test_put_file_uploads_a_recording_in_parts(s3: S3BlobStore, tmp_path: Path) -> None:
    data = random.Random(5).randbytes(5 * MIB + 1234)
    recording = tmp_path / "call.webm"
    await asyncio.to_thread(recording.write_bytes, data)
    key = await s3.put_file(recording)
    assert key == hashlib.sha256(data).hexdigest()
    assert await s3.put_file(recording) == key
    assert await s3.get(key) == data
    assert await s3.size(key) == len(data)
    head = await _raw(s3.config.endpoint, "head_object", Bucket=s3.config.bucket, Key=key)
    assert head["ETag"].endswith('-2"')  # a multipart upload of two parts


async def test_read_range(s3: S3BlobStore) -> None:
    key = await s3.put(TEN)  # one bucket for all the cases: making a client takes 0.4 s
    for start, end in RANGES:
        assert await s3.read_range(key, start, end) == TEN[start:end]


async def test_invalid_range_is_refused(s3: S3BlobStore) -> None:
    key = await s3.put(TEN)
    for start, end in BAD_RANGES:
        with pytest.raises(BlobRangeError) as err:
            await s3.read_range(key, start, end)
        assert (err.value.start, err.value.end, err.value.size) == (start, end, len(TEN))


async def test_range_of_an_empty_blob(s3: S3BlobStore) -> None:
    key = await s3.put(b"")
    assert await s3.size(key) == 0
    assert await s3.read_range(key, 0, 10) == b""
    with pytest.raises(BlobRangeError):
        await s3.read_range(key, 1, 10)


async def test_delete(s3: S3BlobStore) -> None:
    key = await s3.put(b"retention is over")
    assert await s3.delete(key)
    assert not await s3.exists(key)
    with pytest.raises(BlobNotFound):
        await s3.get(key)
    assert not await s3.delete(key)
    listed = await _raw(s3.config.endpoint, "list_objects_v2", Bucket=s3.config.bucket)
    assert "Contents" not in listed


async def test_verify_detects_tampering(s3: S3BlobStore) -> None:
    key = await s3.put(b"original recording")
    assert await s3.verify(key)
    await _raw(s3.config.endpoint, "put_object", Bucket=s3.config.bucket, Key=key, Body=b"edited")
    assert not await s3.verify(key)


async def test_unreachable_endpoint_is_named(unused_tcp_port: int) -> None:
    store = S3BlobStore(_config(f"http://127.0.0.1:{unused_tcp_port}", "blobs"))
    with pytest.raises(BlobStoreUnavailable, match="cannot connect") as err:
        await store.open()
    assert f"127.0.0.1:{unused_tcp_port}" in str(err.value) and SECRET not in str(err.value)


async def test_refused_credentials_are_named(refusing_endpoint: str) -> None:
    store = S3BlobStore(_config(refusing_endpoint, "blobs"))
    with pytest.raises(BlobStoreUnavailable, match="access refused") as err:
        await store.open()
    assert "check the access key" in str(err.value) and SECRET not in str(err.value)


async def test_app_keeps_reference_photos_in_the_bucket(
    moto_endpoint: str, tmp_path: Path, shared_data: Path
) -> None:
    bucket = f"app-{uuid.uuid4().hex[:12]}"
    settings = make_settings(
        tmp_path,
        shared_data,
        CLOUDBRANCH_BLOB_S3_ENDPOINT=moto_endpoint,
        CLOUDBRANCH_BLOB_S3_BUCKET=bucket,
        CLOUDBRANCH_BLOB_S3_ACCESS_KEY="test",
        CLOUDBRANCH_BLOB_S3_SECRET_KEY=SECRET,
    )
    photo = (shared_data / "identity/face_recognition/obama/obama.jpg").read_bytes()
    async with running_world(settings, shared_data) as world:
        assert isinstance(world.app[BLOBS], S3BlobStore)
        assert await world.app[BLOBS].get(hashlib.sha256(photo).hexdigest()) == photo
    stored = (await _raw(moto_endpoint, "list_objects_v2", Bucket=bucket))["Contents"]
    assert hashlib.sha256(photo).hexdigest() in [o["Key"] for o in stored]
    assert not (tmp_path / "var" / "blobs").exists()


async def test_app_does_not_start_without_its_bucket(
    unused_tcp_port: int, tmp_path: Path, shared_data: Path
) -> None:
    settings = make_settings(
        tmp_path,
        shared_data,
        CLOUDBRANCH_BLOB_S3_ENDPOINT=f"http://127.0.0.1:{unused_tcp_port}",
        CLOUDBRANCH_BLOB_S3_ACCESS_KEY="test",
        CLOUDBRANCH_BLOB_S3_SECRET_KEY=SECRET,
    )
    server = TestServer(create_app(settings), host="127.0.0.1")
    with pytest.raises(BlobStoreUnavailable, match="cannot connect"):
        await server.start_server()
    await server.close()
