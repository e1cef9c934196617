"""The Ed25519 key that signs audit checkpoints, and the signed message.

The key is ``AuditConfig.signing_seed`` (``CLOUDBRANCH_AUDIT_SIGNING_KEY``: the base64 of a raw
32-byte seed). Without one, the server or the command generates a seed on first use into
``AuditConfig.key_file`` (in the data folder, mode 0600) and logs that it did. Several nodes
must share one key: set the variable on each.

A checkpoint signs ``MESSAGE_PREFIX`` followed by the canonical JSON of ``{at, hash, key_id,
seq}`` (sorted keys, no whitespace); ``key_id`` is the first 16 hex characters of the SHA-256 of
the raw public key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from store.chain import Broken, format_at
from store.config import AuditConfig
from store.errors import SigningKeyError

log = logging.getLogger(__name__)

SEED_BYTES = 32
MESSAGE_PREFIX = b"cloudbranch audit checkpoint v1\n"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement that the log's event ``seq`` had ``hash`` at time ``at``."""

    seq: int
    hash: str
    at: datetime
    key_id: str
    signature: str  # base64 of the 64-byte Ed25519 signature


def decode_seed(text: str) -> bytes:
    """The 32-byte seed in base64 ``text``; ``ValueError`` (never quoting it) otherwise."""
    try:
        seed = base64.b64decode(text.strip(), validate=True)
    except binascii.Error as err:
        raise ValueError("the audit signing key is not base64") from err
    if len(seed) != SEED_BYTES:
        raise ValueError(f"the audit signing key must be {SEED_BYTES} bytes, not {len(seed)}")
    return seed


def public_key_b64(public: Ed25519PublicKey) -> str:
    """The raw public key in base64 (what ``audit verify --public-key`` takes)."""
    return base64.b64encode(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode("ascii")


def parse_public_key(text: str) -> Ed25519PublicKey:
    """A public key from its base64 raw form; ``SigningKeyError`` when it is not one."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError) as err:
        raise SigningKeyError("the public key must be the base64 of 32 raw bytes") from err


def key_id(public: Ed25519PublicKey) -> str:
    """A short name of the key: 16 hex characters of the SHA-256 of its raw bytes."""
    return hashlib.sha256(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]


def checkpoint_message(seq: int, hash_: str, at: datetime, key: str) -> bytes:
    """The bytes a checkpoint's signature covers."""
    fields = {"at": format_at(at), "hash": hash_, "key_id": key, "seq": seq}
    return MESSAGE_PREFIX + json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def sign_checkpoint(key: Ed25519PrivateKey, seq: int, hash_: str, at: datetime) -> Checkpoint:
    """A checkpoint of event ``seq`` (whose hash is ``hash_``) signed with ``key``."""
    kid = key_id(key.public_key())
    signature = key.sign(checkpoint_message(seq, hash_, at, kid))
    return Checkpoint(seq, hash_, at, kid, base64.b64encode(signature).decode("ascii"))


def _signature_ok(public: Ed25519PublicKey, cp: Checkpoint) -> bool:
    try:
        public.verify(
            base64.b64decode(cp.signature, validate=True),
            checkpoint_message(cp.seq, cp.hash, cp.at, cp.key_id),
        )
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def check_checkpoint(
    cp: Checkpoint, public: Ed25519PublicKey, stored_hash: str | None
) -> Broken | None:
    """What is wrong with ``cp``: its key, its signature, or the event it names (whose stored
    hash is ``stored_hash``, None when there is no such event)."""
    expected_id = key_id(public)
    if cp.key_id != expected_id:
        return Broken(
            cp.seq,
            "checkpoint_key",
            f"checkpoint at seq {cp.seq} names key {cp.key_id}, not the given key {expected_id}",
        )
    if not _signature_ok(public, cp):
        return Broken(
            cp.seq, "checkpoint_signature", f"checkpoint at seq {cp.seq}: the signature fails"
        )
    if stored_hash is None:
        return Broken(
            cp.seq,
            "checkpoint_missing_event",
            f"checkpoint at seq {cp.seq}: the event is missing (the log was cut short)",
        )
    if stored_hash != cp.hash:
        return Broken(
            cp.seq,
            "checkpoint_hash_mismatch",
            f"checkpoint at seq {cp.seq}: the event's hash no longer matches the signed one",
        )
    return None


# ---- the key itself (file I/O: call these in a thread from async code) ---------------------


def _read_key_file(path: Path) -> bytes:
    if path.stat().st_mode & 0o077:
        log.warning("the audit signing key %s is readable by others: chmod 600 it", path)
    try:
        return decode_seed(path.read_text(encoding="ascii"))
    except (ValueError, UnicodeDecodeError) as err:
        raise SigningKeyError(f"{path} does not hold a base64 32-byte Ed25519 seed") from err


def _create_key_file(path: Path) -> bytes:
    """Write a new seed to ``path`` (0600); if another process won the race, read theirs."""
    seed = secrets.token_bytes(SEED_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(base64.b64encode(seed).decode("ascii") + "\n")
    try:
        os.link(tmp, path)  # atomic, and refuses to replace a key that is already there
    except FileExistsError:
        return _read_key_file(path)
    finally:
        tmp.unlink()
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    log.warning(
        "generated a new audit signing key in %s (key id %s, public key %s); keep the public "
        "key apart from the server to verify checkpoints, and give every node the same key "
        "in CLOUDBRANCH_AUDIT_SIGNING_KEY",
        path,
        key_id(public),
        public_key_b64(public),
    )
    return seed


def find_signing_key(cfg: AuditConfig) -> Ed25519PrivateKey | None:
    """The configured key, else the one in ``cfg.key_file``; None when there is neither.

    Blocking (file I/O).
    """
    if cfg.signing_seed is not None:
        return Ed25519PrivateKey.from_private_bytes(cfg.signing_seed)
    if cfg.key_file.exists():
        return Ed25519PrivateKey.from_private_bytes(_read_key_file(cfg.key_file))
    return None


def signing_key(cfg: AuditConfig) -> Ed25519PrivateKey:
    """Like :func:`find_signing_key`, but generates a key into ``cfg.key_file`` when there is
    none (and logs that it did). Blocking (file I/O)."""
    found = find_signing_key(cfg)
    if found is not None:
        return found
    return Ed25519PrivateKey.from_private_bytes(_create_key_file(cfg.key_file))
