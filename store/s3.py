"""A ``BlobStore`` on an S3-compatible service (MinIO, AWS S3): one object per blob.

boto3 blocks, so every call runs in a worker thread (``asyncio.to_thread``); the one client is
made once in ``open()`` and shared by those threads (botocore clients are thread-safe).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import boto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import (  # type: ignore[import-untyped]
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
)

from store.blobs import BlobStore, LocalBlobStore, blob_key, check_key
from store.config import S3Config, StoreConfig
from store.errors import BlobCorrupt, BlobNotFound, BlobStoreUnavailable

log = logging.getLogger(__name__)

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
    Reads re-hash the bytes and raise ``BlobCorrupt`` when they no longer match the key; S3,
    MinIO or a network problem raises ``BlobStoreUnavailable`` naming it.
    """

    def __init__(self, config: S3Config) -> None:
        self.config = config
        self._s3: Any = None

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

    def _call(self, fn: Any, key: str) -> Any:
        """Run one blocking step, turning botocore errors into store errors."""
        try:
            return fn(check_key(key))
        except ClientError as err:
            if _code(err) in _MISSING:
                raise BlobNotFound(key) from err
            raise _unavailable(self.config, err) from err
        except BotoCoreError as err:
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

    def _get_sync(self, key: str) -> bytes:
        def get(key: str) -> bytes:
            response = self._client().get_object(Bucket=self.config.bucket, Key=key)
            data: bytes = response["Body"].read()
            if blob_key(data) != key:
                raise BlobCorrupt(key)
            return data

        result: bytes = self._call(get, key)
        return result

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

    async def get(self, key: str) -> bytes:
        """Return the blob's bytes; ``BlobNotFound`` if absent, ``BlobCorrupt`` if damaged."""
        return await asyncio.to_thread(self._get_sync, key)

    async def exists(self, key: str) -> bool:
        """Tell whether the blob exists; ``InvalidBlobKey`` if the key is malformed."""
        result: bool = await asyncio.to_thread(self._call, self._exists_sync, key)
        return result


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
