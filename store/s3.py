"""A ``BlobStore`` on an S3-compatible service (MinIO, AWS S3): one object per blob.

boto3 blocks, so every call runs in a worker thread (``asyncio.to_thread``); the one client is
made once in ``open()`` and shared by those threads (botocore clients are thread-safe).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any, TypeVar

import boto3  # type: ignore[import-untyped]
from boto3.exceptions import S3UploadFailedError  # type: ignore[import-untyped]
from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import (  # type: ignore[import-untyped]
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
)

from store.blobs import (
    CHUNK_SIZE,
    BlobStore,
    LocalBlobStore,
    blob_key,
    check_key,
    clamp_range,
    hash_chunks,
    hash_file,
)
from store.config import S3Config, StoreConfig
from store.errors import BlobCorrupt, BlobNotFound, BlobStoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

PART_SIZE = 16 * 1024 * 1024
"""Files at least this large are uploaded in parts of this size (S3's minimum is 5 MiB)."""

_MISSING = {"404", "NoSuchKey", "NotFound"}
_NO_BUCKET = {"NoSuchBucket"}
_CREDENTIALS = {
    "403",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidClientTokenId",
}


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _unavailable(cfg: S3Config, err: Exception) -> BlobStoreUnavailable:
    """Name the problem with the store at ``cfg`` (endpoint and bucket, never a secret)."""
    where = f"S3 blob store {cfg.endpoint} bucket {cfg.bucket!r}"
    if isinstance(err, S3UploadFailedError) and isinstance(err.__context__, ClientError):
        err = err.__context__  # boto3's upload_file wraps the S3 error it met
    if isinstance(err, ClientError):
        code = _code(err)
        if code in _CREDENTIALS:
            problem = f"access refused ({code}): check the access key, secret key and bucket policy"
        elif code in _NO_BUCKET:
            problem = "the bucket does not exist"
        else:
            problem = f"request failed ({code or 'unknown error'})"
    elif isinstance(err, EndpointConnectionError):
        problem = "cannot connect to the endpoint"
    else:
        problem = f"request failed ({type(err).__name__})"
    return BlobStoreUnavailable(f"{where}: {problem}")


class S3BlobStore:
    """A ``BlobStore`` over an S3 bucket: blob ``abcdef…`` is the object ``abcdef…``.

    ``await open()`` before use: it makes the client and creates the bucket if it is missing.
    ``get`` re-hashes the bytes and raises ``BlobCorrupt`` when they no longer match the key
    (``read_range`` cannot; ``verify`` streams the object to check it). S3, MinIO or a network
    problem raises ``BlobStoreUnavailable`` naming it. ``part_size``: files this large or larger
    go up as a multipart upload in parts of this size.
    """

    def __init__(self, config: S3Config, *, part_size: int = PART_SIZE) -> None:
        self.config = config
        self._s3: Any = None
        self._transfer = TransferConfig(
            multipart_threshold=part_size, multipart_chunksize=part_size
        )

    def _client(self) -> Any:
        if self._s3 is None:
            raise BlobStoreUnavailable("the S3 blob store is used before open()")
        return self._s3

    def _open_sync(self) -> None:
        cfg = self.config
        self._s3 = boto3.session.Session().client(
            "s3",
            endpoint_url=cfg.endpoint,
            region_name=cfg.region,
            aws_access_key_id=cfg.access_key,
            aws_secret_access_key=cfg.secret_key,
            config=Config(
                connect_timeout=5,
                read_timeout=60,
                retries={"max_attempts": 3, "mode": "standard"},
                s3={"addressing_style": "path"},  # MinIO: no per-bucket DNS names
            ),
        )
        self._ensure_bucket_sync()

    def _ensure_bucket_sync(self) -> None:
        s3, bucket = self._client(), self.config.bucket
        try:
            s3.head_bucket(Bucket=bucket)
            return
        except ClientError as err:
            if _code(err) not in _MISSING | _NO_BUCKET:
                raise
        args: dict[str, Any] = {"Bucket": bucket}
        if self.config.region != "us-east-1":
            args["CreateBucketConfiguration"] = {"LocationConstraint": self.config.region}
        try:
            s3.create_bucket(**args)
        except ClientError as err:  # another node may have made it meanwhile
            if _code(err) != "BucketAlreadyOwnedByYou":
                raise
        log.info("created S3 bucket %s at %s", bucket, self.config.endpoint)

    def _call(self, fn: Callable[[str], T], key: str) -> T:
        """Run one blocking step on the canonical key, turning boto errors into store errors."""
        try:
            return fn(check_key(key))
        except ClientError as err:
            if _code(err) in _MISSING:
                raise BlobNotFound(key) from err
            raise _unavailable(self.config, err) from err
        except (BotoCoreError, S3UploadFailedError) as err:
            raise _unavailable(self.config, err) from err

    def _exists_sync(self, key: str) -> bool:
        try:
            self._client().head_object(Bucket=self.config.bucket, Key=key)
        except ClientError as err:
            if _code(err) in _MISSING:
                return False
            raise
        return True

    def _put_sync(self, data: bytes) -> str:
        key = blob_key(data)

        def put(key: str) -> None:
            if not self._exists_sync(key):  # same bytes, same key: nothing to do
                self._client().put_object(Bucket=self.config.bucket, Key=key, Body=data)

        self._call(put, key)
        return key

    def _put_file_sync(self, path: Path) -> str:
        key = hash_file(path)

        def upload(key: str) -> None:
            if not self._exists_sync(key):
                bucket = self.config.bucket
                self._client().upload_file(str(path), bucket, key, Config=self._transfer)

        self._call(upload, key)
        return key

    def _get_sync(self, key: str) -> bytes:
        def get(key: str) -> bytes:
            response = self._client().get_object(Bucket=self.config.bucket, Key=key)
            data: bytes = response["Body"].read()
            if blob_key(data) != key:
                raise BlobCorrupt(key)
            return data

        return self._call(get, key)

    def _size_sync(self, key: str) -> int:
        response = self._client().head_object(Bucket=self.config.bucket, Key=key)
        return int(response["ContentLength"])

    def _read_range_sync(self, key: str, start: int, end: int) -> bytes:
        if start < 0 or end <= start:  # refused whatever the size; the size is for the message
            clamp_range(key, start, end, self._size_sync(key))
        try:
            response = self._client().get_object(
                Bucket=self.config.bucket, Key=key, Range=f"bytes={start}-{end - 1}"
            )
        except ClientError as err:  # 416: starts past the end, or the blob is empty
            if _code(err) != "InvalidRange":
                raise
            clamp_range(key, start, end, self._size_sync(key))
            return b""  # [0, end) of an empty blob
        with closing(response["Body"]) as body:
            if "ContentRange" not in response and start > 0:
                where = f"S3 blob store {self.config.endpoint} bucket {self.config.bucket!r}"
                raise BlobStoreUnavailable(f"{where}: the Range header was ignored")
            data: bytes = body.read(end - start)
        return data

    def _delete_sync(self, key: str) -> bool:
        if not self._exists_sync(key):  # delete_object succeeds either way
            return False
        self._client().delete_object(Bucket=self.config.bucket, Key=key)
        return True

    def _verify_sync(self, key: str) -> bool:
        response = self._client().get_object(Bucket=self.config.bucket, Key=key)
        with closing(response["Body"]) as body:
            return hash_chunks(body.iter_chunks(CHUNK_SIZE)) == key

    async def open(self) -> None:
        """Make the client and create the bucket if it is missing (``BlobStoreUnavailable``)."""
        try:
            await asyncio.to_thread(self._open_sync)
        except (ClientError, BotoCoreError) as err:
            await self.close()
            raise _unavailable(self.config, err) from err

    async def close(self) -> None:
        """Close the client's connections."""
        if self._s3 is not None:
            await asyncio.to_thread(self._s3.close)
            self._s3 = None

    async def put(self, data: bytes) -> str:
        """Store ``data`` and return its SHA-256 hex key (idempotent)."""
        return await asyncio.to_thread(self._put_sync, data)

    async def put_file(self, path: Path) -> str:
        """Hash the file in chunks, upload it (in parts when large) under that key; idempotent."""
        return await asyncio.to_thread(self._put_file_sync, path)

    async def get(self, key: str) -> bytes:
        """Return the blob's bytes; ``BlobNotFound`` if absent, ``BlobCorrupt`` if damaged."""
        return await asyncio.to_thread(self._get_sync, key)

    async def exists(self, key: str) -> bool:
        """Tell whether the blob exists; ``InvalidBlobKey`` if the key is malformed."""
        return await asyncio.to_thread(self._call, self._exists_sync, key)

    async def size(self, key: str) -> int:
        """Return the object's length in bytes; ``BlobNotFound`` if absent."""
        return await asyncio.to_thread(self._call, self._size_sync, key)

    async def read_range(self, key: str, start: int, end: int) -> bytes:
        """Return bytes ``[start, end)`` (clamped) with one ranged GET, unchecked against the key.

        See ``BlobStore.read_range``; a range past the end costs one more request (HEAD).
        """

        def read(key: str) -> bytes:
            return self._read_range_sync(key, start, end)

        return await asyncio.to_thread(self._call, read, key)

    async def delete(self, key: str) -> bool:
        """Delete the object (HEAD first to tell the cases apart); False if it was not there."""
        return await asyncio.to_thread(self._call, self._delete_sync, key)

    async def verify(self, key: str) -> bool:
        """Stream the object through SHA-256: True if it still matches ``key``."""
        return await asyncio.to_thread(self._call, self._verify_sync, key)


@asynccontextmanager
async def open_blob_store(config: StoreConfig) -> AsyncIterator[BlobStore]:
    """The configured blob store, ready: the S3 bucket when one is set, else the local folder."""
    if config.s3 is None:
        yield LocalBlobStore(config.blob_dir)
        return
    store = S3BlobStore(config.s3)
    await store.open()
    try:
        yield store
    finally:
        await store.close()
