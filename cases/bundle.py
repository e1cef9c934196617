"""A signed export of one case for auditors and courts, and its offline check.

The bundle is a zip: the case's recordings, verification evidence, audit events
(``events.jsonl``), chat, case record, review verdicts, the newest checkpoint that covers the
case's events (``checkpoint.json``), and ``manifest.json`` listing every other file with its
SHA-256 and size, signed in ``manifest.sig`` with the audit key (``store.signing``).

What it proves, and what not:

* The signature proves the bundle came, unchanged, from a holder of the audit key — whoever
  pins that key (``verify_bundle(..., expected_public_key)``). Unpinned, it proves only that the
  files match a manifest signed by the key inside it.
* Each event proves itself: its ``hash`` recomputes from its ``prev_hash`` and its fields
  (``store.chain``), and events with consecutive ``seq`` link up. The case's events are not
  consecutive in the log (other cases' events lie between), so the bundle alone cannot show
  that none of the case's events were left out, nor tie them to ``checkpoint.json``: that needs
  the chain between them, i.e. ``cloudbranch audit verify`` on the full log. The manifest names
  the chain head at export (``chain_head``) so the two can be compared later.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import os
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cases.artifacts import streams
from cases.errors import CaseNotFound
from store.audit import add_event, chain_head
from store.blobs import CHUNK_SIZE, BlobStore
from store.chain import ChainEvent, event_hash, format_at
from store.db import Database
from store.errors import BlobCorrupt, SigningKeyError
from store.models import (
    AuditCheckpoint,
    AuditEvent,
    Case,
    CaseReview,
    ChatMessage,
    Customer,
    Recording,
    ReviewVerdict,
    Staff,
    VerificationAttempt,
)
from store.signing import checkpoint_message, key_id, parse_public_key, public_key_b64

log = logging.getLogger(__name__)

FORMAT = "cloudbranch-case-bundle/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
EVENTS = "events.jsonl"
_CHAIN_FIELDS = (
    *("seq", "at", "actor_kind", "actor_id", "case_id", "grant_id", "action"),
    *("outcome", "detail", "prev_hash", "hash"),
)
_CASE_TIMES = ("created_at", "queued_at", "call_started_at", "call_ended_at", "closed_at")


@dataclass(frozen=True, slots=True)
class BundleInfo:
    """What :func:`export_case` wrote."""

    path: str
    case: str
    files: int
    size: int
    manifest_sha256: str
    key_id: str
    events: int
    exported_event_seq: int

    def to_json(self) -> dict[str, object]:
        """Every field, for the command's output."""
        return {
            "path": self.path,
            "case": self.case,
            "files": self.files,
            "size": self.size,
            "manifest_sha256": self.manifest_sha256,
            "key_id": self.key_id,
            "events": self.events,
            "exported_event_seq": self.exported_event_seq,
        }


@dataclass(frozen=True, slots=True)
class BundleReport:
    """What :func:`verify_bundle` found; each problem names its place (file, line, seq)."""

    ok: bool
    key_id: str | None
    pinned: bool
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        """``{ok, key_id, pinned, problems, note}``."""
        if self.pinned:
            note = "signed by the expected key"
        else:
            note = f"signed by key {self.key_id}, which was not pinned: pass the expected key"
        return {
            "ok": self.ok,
            "key_id": self.key_id,
            "pinned": self.pinned,
            "problems": self.problems,
            "note": note,
        }


# ---- reading the case (one transaction) ----------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return None if value is None else format_at(value)


def _maybe_json(text: str | None) -> object:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


@dataclass(slots=True)
class _Snapshot:
    """Everything read from the database for one bundle."""

    case: Case
    documents: dict[str, object]  # file name → JSON value
    event_lines: list[dict[str, object]]
    recordings: list[Recording]
    attempts: list[VerificationAttempt]
    checkpoint: dict[str, object] | None
    head: tuple[int, str]


def _event_line(row: AuditEvent) -> dict[str, object]:
    line: dict[str, object] = {name: getattr(row, name) for name in _CHAIN_FIELDS}
    line["at"] = format_at(row.at)
    return line


def _recording_json(row: Recording) -> dict[str, object]:
    return {
        "side": row.side,
        "sha256": row.blob_key,
        "content_type": row.content_type,
        "size": row.size,
        "duration_ms": row.duration_ms,
        "offset_ms": row.offset_ms,
        "clock_zero": _iso(row.clock_zero),
        "video_frames": row.video_frames,
        "audio_frames": row.audio_frames,
        "dropped_frames": row.dropped_frames,
        "recovered": row.recovered,
        "stored_at": _iso(row.stored_at),
        "deleted_at": _iso(row.deleted_at),
    }


def _attempt_json(row: VerificationAttempt) -> dict[str, object]:
    return {
        "attempt": row.public_id,
        "state": row.state,
        "challenges": _maybe_json(row.challenges),
        "reasons": _maybe_json(row.reasons),
        "scores": _maybe_json(row.scores),
        "policy_version": row.policy_version,
        "started_at": _iso(row.started_at),
        "ended_at": _iso(row.ended_at),
        "review": row.review,
        "review_reason": row.review_reason,
        "reviewed_by": row.reviewed_by,
        "reviewed_at": _iso(row.reviewed_at),
        "evidence_sha256": row.evidence_blob_key,
        "best_frame_sha256": row.best_frame_blob_key,
        "evidence_deleted_at": _iso(row.evidence_deleted_at),
    }


async def _case_json(
    s: AsyncSession, case: Case, recordings: list[Recording], attempts: list[VerificationAttempt]
) -> dict[str, object]:
    customer = await s.get(Customer, case.customer_id)
    advisor = None if case.advisor_id is None else await s.get(Staff, case.advisor_id)
    return {
        "case": case.public_id,
        "service": case.service,
        "state": case.state,
        "lang": case.lang,
        "elderly_mode": case.elderly_mode,
        "customer": None
        if customer is None
        else {"name": customer.name, "id_number_masked": customer.id_number_masked},
        "advisor": None
        if advisor is None
        else {"id": advisor.id, "username": advisor.username, "name": advisor.display_name},
        "consent": {
            "version": case.consent_version,
            "sha256": case.consent_sha256,
            "at": _iso(case.consented_at),
        },
        "times": {name: _iso(getattr(case, name)) for name in _CASE_TIMES},
        "ended_by": case.ended_by,
        "outcome": _maybe_json(case.outcome),
        "recordings": [_recording_json(r) for r in recordings],
        "verification_attempts": [_attempt_json(a) for a in attempts],
    }


async def _verdicts_json(s: AsyncSession, case_id: int) -> dict[str, object]:
    review = await s.get(CaseReview, case_id)
    rows = await s.scalars(
        select(ReviewVerdict).where(ReviewVerdict.case_id == case_id).order_by(ReviewVerdict.id)
    )
    return {
        "review": None
        if review is None
        else {
            "state": review.state,
            "flags": _maybe_json(review.flags),
            "first_auditor_id": review.first_auditor_id,
            "updated_at": _iso(review.updated_at),
        },
        "verdicts": [
            {
                "auditor_id": v.auditor_id,
                "verdict": v.verdict,
                "comment": v.comment,
                "state_after": v.state_after,
                "at": _iso(v.at),
            }
            for v in rows
        ],
    }


async def _chat_json(s: AsyncSession, case_id: int) -> list[dict[str, object]]:
    rows = await s.scalars(
        select(ChatMessage).where(ChatMessage.case_id == case_id).order_by(ChatMessage.id)
    )
    return [{"sender": m.sender, "text": m.text, "sent_at": _iso(m.sent_at)} for m in rows]


async def _checkpoint_json(s: AsyncSession, last_seq: int) -> dict[str, object] | None:
    query = (
        select(AuditCheckpoint)
        .where(AuditCheckpoint.seq >= last_seq)
        .order_by(AuditCheckpoint.seq.desc(), AuditCheckpoint.id.desc())
        .limit(1)
    )
    cp = await s.scalar(query)
    if cp is None:
        return None
    return {
        "seq": cp.seq,
        "hash": cp.hash,
        "at": format_at(cp.at),
        "key_id": cp.key_id,
        "signature": cp.signature,
    }


async def _snapshot(db: Database, public_id: str) -> _Snapshot:
    async with db.session() as s, s.begin():
        case = await s.scalar(select(Case).where(Case.public_id == public_id))
        if case is None:
            raise CaseNotFound(f"no case {public_id!r}")
        recordings = list(
            await s.scalars(
                select(Recording).where(Recording.case_id == case.id).order_by(Recording.side)
            )
        )
        attempts = list(
            await s.scalars(
                select(VerificationAttempt)
                .where(VerificationAttempt.case_id == case.id)
                .order_by(VerificationAttempt.id)
            )
        )
        events = await s.scalars(
            select(AuditEvent).where(AuditEvent.case_id == case.id).order_by(AuditEvent.seq)
        )
        rows = list(events)
        lines = [_event_line(e) for e in rows]
        documents: dict[str, object] = {
            "case.json": await _case_json(s, case, recordings, attempts),
            "chat.json": await _chat_json(s, case.id),
            "verdicts.json": await _verdicts_json(s, case.id),
        }
        checkpoint = await _checkpoint_json(s, rows[-1].seq) if rows else None
        head = await chain_head(s)
    return _Snapshot(case, documents, lines, recordings, attempts, checkpoint, head)


# ---- writing the zip (every step in a worker thread) ---------------------------------------


def _json_bytes(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, indent=1).encode("utf-8")


def _jsonl_bytes(lines: list[dict[str, object]]) -> bytes:
    dumped = (
        json.dumps(x, sort_keys=True, ensure_ascii=False, separators=(",", ":")) for x in lines
    )
    return "".join(line + "\n" for line in dumped).encode("utf-8")


class _ZipSink:
    """A zip being written, one file at a time; remembers each file's SHA-256 and size.

    Blocking: call every method through ``asyncio.to_thread``.
    """

    def __init__(self, path: Path, at: datetime) -> None:
        self._zip = zipfile.ZipFile(path, "w", allowZip64=True)
        self._date = at.astimezone(UTC).timetuple()[:6]
        self.files: list[dict[str, object]] = []
        self._fh: IO[bytes] | None = None
        self._name = ""
        self._digest = hashlib.sha256()
        self._size = 0

    def begin(self, name: str, *, compress: bool) -> None:
        info = zipfile.ZipInfo(name, self._date)
        info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        self._fh = self._zip.open(info, "w", force_zip64=True)
        self._name, self._digest, self._size = name, hashlib.sha256(), 0

    def write(self, chunk: bytes) -> None:
        if self._fh is None:
            raise RuntimeError("no file is open in the bundle")
        self._fh.write(chunk)
        self._digest.update(chunk)
        self._size += len(chunk)

    def end(self, *, listed: bool = True) -> str:
        """Close the open file; its SHA-256."""
        if self._fh is None:
            raise RuntimeError("no file is open in the bundle")
        self._fh.close()
        self._fh = None
        sha = self._digest.hexdigest()
        if listed:
            self.files.append({"name": self._name, "sha256": sha, "size": self._size})
        return sha

    def add(self, name: str, data: bytes, *, compress: bool = True, listed: bool = True) -> str:
        """Write a whole small file; its SHA-256."""
        self.begin(name, compress=compress)
        self.write(data)
        return self.end(listed=listed)

    def add_json(self, name: str, value: object) -> None:
        self.add(name, _json_bytes(value))

    def add_events(self, lines: list[dict[str, object]]) -> None:
        self.add(EVENTS, _jsonl_bytes(lines))

    def close(self) -> None:
        if self._fh is not None:  # a failed copy: close its file, or the zip refuses to close
            self._fh.close()
            self._fh = None
        self._zip.close()


async def _copy_blob(sink: _ZipSink, blobs: BlobStore, key: str, name: str) -> None:
    """Stream blob ``key`` into the bundle as ``name``, 1 MiB at a time, checking its hash."""
    size = await blobs.size(key)
    await asyncio.to_thread(sink.begin, name, compress=False)
    for start in range(0, max(size, 1), CHUNK_SIZE):
        chunk = await blobs.read_range(key, start, start + CHUNK_SIZE)
        await asyncio.to_thread(sink.write, chunk)
    if await asyncio.to_thread(sink.end) != key:
        raise BlobCorrupt(key)  # the stored bytes changed: the bundle must not carry them


def _streams(snap: _Snapshot) -> tuple[list[str], list[str]]:
    """The case's co-browse streams (``cobrowse.stored`` events): (kept, deleted by retention)."""
    stored, gone = streams((str(e["action"]), str(e["detail"])) for e in snap.event_lines)
    return [k for k in stored if k not in gone], [k for k in stored if k in gone]


def _deleted(snap: _Snapshot) -> list[dict[str, object]]:
    gone: list[dict[str, object]] = [
        {"kind": "recording", "side": r.side, "sha256": r.blob_key, "at": _iso(r.deleted_at)}
        for r in snap.recordings
        if r.deleted_at is not None
    ]
    for a in snap.attempts:
        if a.evidence_deleted_at is not None:
            keys = [k for k in (a.evidence_blob_key, a.best_frame_blob_key) if k]
            gone.append(
                {"kind": "evidence", "attempt": a.public_id, "sha256": keys}
                | {"at": _iso(a.evidence_deleted_at)}
            )
    gone.extend({"kind": "cobrowse", "sha256": key} for key in _streams(snap)[1])
    return gone


async def _write_media(sink: _ZipSink, blobs: BlobStore, snap: _Snapshot) -> None:
    for rec in snap.recordings:
        if rec.deleted_at is None:
            await _copy_blob(sink, blobs, rec.blob_key, f"recordings/{rec.side}.webm")
    for a in snap.attempts:
        if a.evidence_deleted_at is not None:
            continue
        if a.evidence_blob_key:
            data = await blobs.get(a.evidence_blob_key)
            await asyncio.to_thread(sink.add, f"evidence/{a.public_id}.json", data)
        if a.best_frame_blob_key:
            data = await blobs.get(a.best_frame_blob_key)
            name = f"evidence/{a.public_id}-best.jpg"
            await asyncio.to_thread(sink.add, name, data, compress=False)
    for key in _streams(snap)[0]:
        data = await blobs.get(key)  # hash-checked
        await asyncio.to_thread(sink.add, f"cobrowse/{key}.jsonl", data)


def _manifest(
    snap: _Snapshot, files: list[dict[str, object]], public: Ed25519PublicKey, by: int | None
) -> dict[str, object]:
    seqs = [int(str(line["seq"])) for line in snap.event_lines]
    return {
        "format": FORMAT,
        "case": snap.case.public_id,
        "generated_at": format_at(datetime.now(UTC)),
        "generated_by": {"actor_kind": "system" if by is None else "staff", "actor_id": by},
        "key_id": key_id(public),
        "public_key": public_key_b64(public),
        "files": sorted(files, key=lambda f: str(f["name"])),
        "events": {
            "count": len(seqs),
            "first_seq": seqs[0] if seqs else None,
            "last_seq": seqs[-1] if seqs else None,
        },
        "chain_head": {"seq": snap.head[0], "hash": snap.head[1]},
        "deleted": _deleted(snap),
    }


async def _write_bundle(
    tmp: Path, snap: _Snapshot, blobs: BlobStore, key: Ed25519PrivateKey, by: int | None
) -> tuple[str, int]:
    """Write the whole bundle to ``tmp``; the manifest's SHA-256 and the number of files."""
    sink = await asyncio.to_thread(_ZipSink, tmp, datetime.now(UTC))
    try:
        await _write_media(sink, blobs, snap)
        await asyncio.to_thread(sink.add_events, snap.event_lines)
        for name, value in snap.documents.items():
            await asyncio.to_thread(sink.add_json, name, value)
        if snap.checkpoint is not None:
            await asyncio.to_thread(sink.add_json, "checkpoint.json", snap.checkpoint)
        manifest = _manifest(snap, sink.files, key.public_key(), by)
        data = await asyncio.to_thread(_json_bytes, manifest)
        signature = base64.b64encode(key.sign(data)) + b"\n"
        await asyncio.to_thread(sink.add, SIGNATURE, signature, listed=False)
        manifest_sha = await asyncio.to_thread(sink.add, MANIFEST, data, listed=False)
    finally:
        await asyncio.to_thread(sink.close)
    return manifest_sha, len(sink.files)


async def export_case(
    db: Database,
    blobs: BlobStore,
    key: Ed25519PrivateKey,
    public_id: str,
    auditor_id: int | None,
    dest: Path,
) -> BundleInfo:
    """Write the signed bundle of case ``public_id`` to ``dest`` and log ``audit.exported``.

    ``CaseNotFound`` for an unknown case; ``BlobNotFound``/``BlobCorrupt`` when a recording or
    evidence blob that is not marked deleted is missing or changed (nothing is written then).
    The bundle is written beside ``dest`` and renamed into place once complete. The event
    (actor: staff ``auditor_id``, or the system) follows in its own transaction (the bundle is
    removed again if it fails); it is not in the bundle, whose manifest is built before it.
    """
    snap = await _snapshot(db, public_id)
    tmp = dest.with_name(f".{dest.name}.part")
    try:
        manifest_sha, files = await _write_bundle(tmp, snap, blobs, key, auditor_id)
        await asyncio.to_thread(os.replace, tmp, dest)
    except BaseException:
        await asyncio.to_thread(tmp.unlink, missing_ok=True)
        raise
    try:
        async with db.session() as s, s.begin():
            event = await add_event(
                s,
                action="audit.exported",
                outcome="ok",
                actor_kind="system" if auditor_id is None else "staff",
                actor_id=auditor_id,
                case_id=snap.case.id,
                detail={"manifest_sha256": manifest_sha, "files": files},
            )
    except BaseException:
        await asyncio.to_thread(dest.unlink, missing_ok=True)  # no bundle without its event
        raise
    size = (await asyncio.to_thread(dest.stat)).st_size
    log.info("exported case bundle (%d files)", files, extra={"case_id": snap.case.id})
    return BundleInfo(
        path=str(dest),
        case=public_id,
        files=files,
        size=size,
        manifest_sha256=manifest_sha,
        key_id=key_id(key.public_key()),
        events=len(snap.event_lines),
        exported_event_seq=event.seq,
    )


# ---- checking a bundle offline ---------------------------------------------------------------

_UNREADABLE = (zipfile.BadZipFile, OSError, ValueError, RuntimeError, NotImplementedError, EOFError)


def _entry_digest(zf: zipfile.ZipFile, name: str) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with zf.open(name) as fh:
        while chunk := fh.read(CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _file_problems(zf: zipfile.ZipFile, listed: Any) -> list[str]:
    """Every listed file present with its SHA-256 and size; nothing unlisted; no duplicates."""
    names = zf.namelist()
    problems = [
        f"{n}: appears more than once in the zip" for n in sorted(set(names)) if names.count(n) > 1
    ]
    expected = {str(f["name"]): (str(f["sha256"]), int(f["size"])) for f in listed}
    for name, (sha, size) in sorted(expected.items()):
        if name not in names:
            problems.append(f"{name}: missing from the zip")
            continue
        try:
            actual_sha, actual_size = _entry_digest(zf, name)
        except _UNREADABLE as err:
            problems.append(f"{name}: unreadable ({err})")
            continue
        if actual_sha != sha:
            problems.append(f"{name}: sha256 mismatch")
        if actual_size != size:
            problems.append(f"{name}: size {actual_size}, the manifest says {size}")
    extra = set(names) - set(expected) - {MANIFEST, SIGNATURE}
    problems += [f"{name}: not listed in the manifest" for name in sorted(extra)]
    return problems


def _chain_event(obj: Any) -> ChainEvent:
    """The event of one ``events.jsonl`` line; ``ValueError``/``TypeError``/``KeyError``."""
    if not isinstance(obj, dict) or not isinstance(obj["seq"], int) or isinstance(obj["seq"], bool):
        raise TypeError("seq must be an integer")
    if not all(isinstance(obj[k], str) for k in ("at", "detail", "prev_hash", "hash")):
        raise TypeError("at, detail, prev_hash and hash must be strings")
    return ChainEvent(
        seq=obj["seq"],
        at=datetime.fromisoformat(obj["at"]),
        actor_kind=obj["actor_kind"],
        actor_id=obj["actor_id"],
        case_id=obj["case_id"],
        grant_id=obj["grant_id"],
        action=obj["action"],
        outcome=obj["outcome"],
        detail=obj["detail"],
        prev_hash=obj["prev_hash"],
        hash=obj["hash"],
    )


def _recomputes(event: ChainEvent) -> bool:
    try:
        return event_hash(event.prev_hash, event) == event.hash
    except (ValueError, TypeError, UnicodeEncodeError):  # detail not JSON, prev_hash not ASCII
        return False


def _event_problems(text: str, expected: Any) -> list[str]:
    """Each event recomputes, seqs increase, consecutive seqs link, counts match the manifest."""
    problems: list[str] = []
    seqs: list[int] = []
    prev: ChainEvent | None = None
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{EVENTS} line {number}"
        try:
            event = _chain_event(json.loads(line))
        except (ValueError, TypeError, KeyError) as err:
            problems.append(f"{where}: not an event ({err})")
            continue
        where += f" (seq {event.seq})"
        if not _recomputes(event):
            problems.append(f"{where}: hash does not recompute")
        if prev is not None and event.seq <= prev.seq:
            problems.append(f"{where}: seq does not increase (after seq {prev.seq})")
        elif prev is not None and event.seq == prev.seq + 1 and event.prev_hash != prev.hash:
            problems.append(f"{where}: prev_hash is not the hash of seq {prev.seq}")
        prev = event
        seqs.append(event.seq)
    found = {
        "count": len(seqs),
        "first_seq": seqs[0] if seqs else None,
        "last_seq": seqs[-1] if seqs else None,
    }
    for name, value in found.items():
        if expected.get(name) != value:
            problems.append(f"{EVENTS}: {name} is {value}, the manifest says {expected.get(name)}")
    return problems


def _signature_ok(public: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        public.verify(base64.b64decode(signature.strip(), validate=True), data)
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def _checkpoint_problems(zf: zipfile.ZipFile, public: Ed25519PublicKey) -> list[str]:
    name = "checkpoint.json"
    try:
        cp = json.loads(zf.read(name))
        message = checkpoint_message(
            int(cp["seq"]), str(cp["hash"]), datetime.fromisoformat(cp["at"]), str(cp["key_id"])
        )
        signature = str(cp["signature"]).encode("ascii")
    except (*_UNREADABLE, KeyError, TypeError) as err:
        return [f"{name}: not a checkpoint ({err})"]
    if cp["key_id"] != key_id(public):
        return [f"{name}: signed by key {cp['key_id']}, not the bundle's key {key_id(public)}"]
    if not _signature_ok(public, signature, message):
        return [f"{name}: signature invalid"]
    return []


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _check_zip(zf: zipfile.ZipFile, expected: Ed25519PublicKey | None) -> BundleReport:
    names = set(zf.namelist())
    missing = [f"{n}: missing from the zip" for n in (MANIFEST, SIGNATURE) if n not in names]
    if missing:
        return BundleReport(False, None, False, missing)
    try:
        data, signature = zf.read(MANIFEST), zf.read(SIGNATURE)
        manifest = json.loads(data)
        public = parse_public_key(str(manifest["public_key"]))
    except (*_UNREADABLE, KeyError, TypeError, SigningKeyError) as err:
        return BundleReport(False, None, False, [f"{MANIFEST}: unreadable ({err})"])
    kid = key_id(public)
    problems: list[str] = []
    if not _signature_ok(public, signature, data):
        problems.append(f"{SIGNATURE}: signature invalid")
    pinned = expected is not None and _raw(expected) == _raw(public)
    if expected is not None and not pinned:
        problems.append(
            f"{SIGNATURE}: signed by key {kid}, not the expected key {key_id(expected)}"
        )
    if manifest.get("format") != FORMAT:
        problems.append(f"{MANIFEST}: format is {manifest.get('format')!r}, not {FORMAT!r}")
    if manifest.get("key_id") != kid:
        problems.append(f"{MANIFEST}: key_id does not name its public_key ({kid})")
    try:
        problems += _file_problems(zf, manifest["files"])
        if EVENTS in names:
            text = zf.read(EVENTS).decode("utf-8")
            problems += _event_problems(text, manifest["events"])
    except (*_UNREADABLE, KeyError, TypeError, AttributeError) as err:
        problems.append(f"{MANIFEST}: malformed ({err})")
    if "checkpoint.json" in names:
        problems += _checkpoint_problems(zf, public)
    return BundleReport(not problems, kid, pinned, problems)


def verify_bundle(path: Path, expected_public_key: Ed25519PublicKey | None = None) -> BundleReport:
    """Check a bundle offline: the signature (against ``expected_public_key`` when given), every
    file's SHA-256 and size, nothing unlisted, and every event's hash and links.

    Blocking (reads the zip); needs neither the database nor the settings.
    """
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        return BundleReport(False, None, False, [f"{path.name}: not a readable zip ({err})"])
    with zf:
        return _check_zip(zf, expected_public_key)
