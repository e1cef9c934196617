"""The signed case bundle: exported from a real database and blob folder, checked offline, and
every kind of tampering named by its place."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import secrets
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from cases.bundle import BundleReport, export_case, verify_bundle
from cases.errors import CaseNotFound
from store.audit import add_event
from store.blobs import CHUNK_SIZE, LocalBlobStore
from store.checkpoints import write_checkpoint
from store.db import Database
from store.errors import BlobCorrupt
from store.models import AuditEvent, Case, ChatMessage, Recording, VerificationAttempt
from store.signing import key_id, public_key_b64
from tests.banking.world import World

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


@dataclass(frozen=True, slots=True)
class Media:
    """What :func:`add_case_media` stored for one case."""

    case_id: int
    public_id: str
    recording: bytes
    recording_key: str
    advisor_key: str
    evidence_key: str
    best_key: str
    attempt: str

    @property
    def keys(self) -> list[str]:
        return [self.recording_key, self.advisor_key, self.evidence_key, self.best_key]


def _recording(case_id: int, side: str, key: str, size: int, at: datetime) -> Recording:
    return Recording(
        case_id=case_id,
        side=side,
        blob_key=key,
        content_type="video/webm",
        size=size,
        duration_ms=60_000,
        offset_ms=0 if side == "customer" else 40,
        clock_zero=at,
        video_frames=1500,
        audio_frames=3000,
        dropped_frames=0,
        recovered=False,
        stored_at=at,
    )


async def add_case_media(
    db: Database,
    blobs: LocalBlobStore,
    world: World,
    *,
    closed_at: datetime | None = None,
    seed: int = 1,
    recording_seed: int | None = None,
) -> Media:
    """A closed case of alice with both recordings, an attempt with evidence, chat and events.

    The customer recording spans several 1 MiB pieces; ``seed`` makes the blobs distinct
    (``recording_seed``, when given, that of the customer recording alone).
    """
    closed = closed_at or datetime.now(UTC)
    recording = random.Random(recording_seed or seed).randbytes(2 * CHUNK_SIZE + 12_345)
    rec_key = await blobs.put(recording)
    adv_key = await blobs.put(f"advisor webm {seed}".encode())
    ev_key = await blobs.put(json.dumps({"outcome": "passed", "seed": seed}).encode())
    best_key = await blobs.put(b"\xff\xd8\xff best frame %d" % seed)
    async with db.session() as s, s.begin():
        case = Case(
            public_id=secrets.token_hex(8),
            customer_id=world.alice,
            service="pin_change",
            state="closed",
            lang="en",
            created_at=closed - timedelta(minutes=20),
            advisor_id=world.staff,
            closed_at=closed,
            outcome=json.dumps({"receipt": {"card": "**** 1234"}}),
        )
        s.add(case)
        await s.flush()
        s.add_all(
            [
                _recording(case.id, "customer", rec_key, len(recording), closed),
                _recording(case.id, "advisor", adv_key, len(f"advisor webm {seed}"), closed),
                ChatMessage(case_id=case.id, sender="customer", text="你好", sent_at=closed),
            ]
        )
        attempt = VerificationAttempt(
            public_id=secrets.token_hex(8),
            case_id=case.id,
            customer_id=world.alice,
            nonce="n",
            challenges='["blink"]',
            state="passed",
            started_at=closed,
            evidence_blob_key=ev_key,
            best_frame_blob_key=best_key,
        )
        s.add(attempt)
        await s.flush()
        case_id, public_id, attempt_id = case.id, case.public_id, attempt.public_id
    steps = [(case_id, "case.opened"), (world.case, "other"), (case_id, "verify.passed")]
    steps += [(case_id, "recording.stored"), (case_id, "case.closed")]
    stored = {"side": "customer", "sha256": rec_key, "size": len(recording)}
    for i, (which, action) in enumerate(steps):
        detail = {"i": i} | (stored if action == "recording.stored" else {})
        async with db.session() as s, s.begin():
            await add_event(
                s, action=action, outcome="ok", actor_kind="system", case_id=which, detail=detail
            )
    return Media(case_id, public_id, recording, rec_key, adv_key, ev_key, best_key, attempt_id)


@pytest.fixture
async def media(db: Database, blobs: LocalBlobStore, world: World) -> Media:
    built = await add_case_media(db, blobs, world)
    await write_checkpoint(db, KEY)
    return built


@pytest.fixture
async def bundle(db: Database, blobs: LocalBlobStore, media: Media, tmp_path: Path) -> Path:
    dest = tmp_path / "case.zip"
    await export_case(db, blobs, KEY, media.public_id, None, dest)
    return dest


async def _verify(path: Path, key: Ed25519PrivateKey | None = KEY) -> BundleReport:
    expected = None if key is None else key.public_key()
    return await asyncio.to_thread(verify_bundle, path, expected)


def _rewrite(
    path: Path, change: Callable[[str, bytes], bytes | None], extra: dict[str, bytes] | None = None
) -> None:
    """Rewrite the zip with each file's bytes passed through ``change`` (None drops it)."""
    with zipfile.ZipFile(path) as zf:
        entries = [(info.filename, zf.read(info)) for info in zf.infolist()]
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries:
            changed = change(name, data)
            if changed is not None:
                zf.writestr(name, changed)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)


def _only(target: str, edit: Callable[[bytes], bytes]) -> Callable[[str, bytes], bytes]:
    return lambda name, data: edit(data) if name == target else data


def _read(path: Path, name: str) -> bytes:
    with zipfile.ZipFile(path) as zf:
        return zf.read(name)


async def test_export_holds_the_case_and_verifies(db: Database, bundle: Path, media: Media) -> None:
    report = await _verify(bundle)
    assert report.ok and report.pinned and report.problems == []
    assert report.key_id == key_id(KEY.public_key())
    with zipfile.ZipFile(bundle) as zf:
        names = set(zf.namelist())
    assert names == {
        "recordings/customer.webm",
        "recordings/advisor.webm",
        f"evidence/{media.attempt}.json",
        f"evidence/{media.attempt}-best.jpg",
        "events.jsonl",
        "chat.json",
        "case.json",
        "verdicts.json",
        "checkpoint.json",
        "manifest.json",
        "manifest.sig",
    }
    assert _read(bundle, "recordings/customer.webm") == media.recording
    manifest = json.loads(_read(bundle, "manifest.json"))
    assert manifest["public_key"] == public_key_b64(KEY.public_key())
    assert manifest["events"]["count"] == 4  # the other case's event is not in it
    lines = [json.loads(x) for x in _read(bundle, "events.jsonl").splitlines()]
    assert [x["action"] for x in lines] == [
        "case.opened",
        "verify.passed",
        "recording.stored",
        "case.closed",
    ]
    assert json.loads(_read(bundle, "chat.json"))[0]["text"] == "你好"
    case = json.loads(_read(bundle, "case.json"))
    assert case["customer"]["id_number_masked"].count("*") >= 8
    assert json.loads(_read(bundle, "checkpoint.json"))["seq"] == manifest["chain_head"]["seq"]
    async with db.session() as s:
        last = await s.scalar(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1))
    assert last is not None and last.action == "audit.exported"
    assert last.actor_kind == "system" and last.case_id == media.case_id
    assert json.loads(last.detail)["files"] == len(manifest["files"])


async def test_unpinned_check_names_the_key(bundle: Path) -> None:
    report = await _verify(bundle, None)
    assert report.ok and not report.pinned
    assert "not pinned" in str(report.to_json()["note"])


async def test_unknown_case(db: Database, blobs: LocalBlobStore, tmp_path: Path) -> None:
    with pytest.raises(CaseNotFound):
        await export_case(db, blobs, KEY, "nope", 1, tmp_path / "x.zip")
    assert not (tmp_path / "x.zip").exists()


async def test_deleted_evidence_is_listed_not_exported(
    db: Database, blobs: LocalBlobStore, media: Media, tmp_path: Path
) -> None:
    async with db.session() as s, s.begin():
        attempt = await s.scalar(
            select(VerificationAttempt).where(VerificationAttempt.public_id == media.attempt)
        )
        assert attempt is not None
        attempt.evidence_deleted_at = datetime.now(UTC)
    dest = tmp_path / "deleted.zip"
    info = await export_case(db, blobs, KEY, media.public_id, 7, dest)
    assert info.files == 7  # two recordings, five JSON files
    manifest = json.loads(_read(dest, "manifest.json"))
    assert manifest["deleted"][0]["attempt"] == media.attempt
    assert manifest["deleted"][0]["sha256"] == [media.evidence_key, media.best_key]
    assert manifest["generated_by"] == {"actor_kind": "staff", "actor_id": 7}
    assert (await _verify(dest)).ok


def _flip_byte(data: bytes) -> bytes:
    return data[:1000] + bytes([data[1000] ^ 1]) + data[1001:]


def _edit_line(number: int, edit: Callable[[dict[str, object]], None]) -> Callable[[bytes], bytes]:
    def change(data: bytes) -> bytes:
        lines = data.decode().splitlines()
        event = json.loads(lines[number - 1])
        edit(event)
        lines[number - 1] = json.dumps(event, sort_keys=True, separators=(",", ":"))
        return "".join(x + "\n" for x in lines).encode()

    return change


def _lines(change: Callable[[list[str]], list[str]]) -> Callable[[bytes], bytes]:
    return lambda data: "".join(x + "\n" for x in change(data.decode().splitlines())).encode()


def _swap(lines: list[str]) -> list[str]:
    return [lines[0], lines[2], lines[1], *lines[3:]]


def _other_signature(_data: bytes) -> bytes:
    return base64.b64encode(OTHER_KEY.sign(b"something else")) + b"\n"


TAMPERING: list[tuple[str, Callable[[str, bytes], bytes | None], str]] = [
    (
        "recording byte",
        _only("recordings/customer.webm", _flip_byte),
        "recordings/customer.webm: sha256 mismatch",
    ),
    (
        "event field",
        _only("events.jsonl", _edit_line(2, lambda e: e.update(outcome="refused"))),
        "events.jsonl line 2 (seq 3): hash does not recompute",
    ),
    (
        "event deleted",
        _only("events.jsonl", _lines(lambda lines: lines[:1] + lines[2:])),
        "events.jsonl: count is 3, the manifest says 4",
    ),
    (
        "events reordered",
        _only("events.jsonl", _lines(_swap)),
        "events.jsonl line 3 (seq 3): seq does not increase (after seq 4)",
    ),
    (
        "manifest edited",
        _only("manifest.json", lambda d: d.replace(b'"format"', b'"format" ')),
        "manifest.sig: signature invalid",
    ),
    (
        "signature replaced",
        _only("manifest.sig", _other_signature),
        "manifest.sig: signature invalid",
    ),
    (
        "file dropped",
        lambda n, d: None if n == "chat.json" else d,
        "chat.json: missing from the zip",
    ),
]


@pytest.mark.parametrize(("what", "change", "problem"), TAMPERING, ids=[t[0] for t in TAMPERING])
async def test_tampering_is_named(
    bundle: Path, what: str, change: Callable[[str, bytes], bytes | None], problem: str
) -> None:
    await asyncio.to_thread(_rewrite, bundle, change)
    report = await _verify(bundle)
    assert not report.ok, what
    assert problem in report.problems, report.problems


async def test_an_extra_file_is_named(bundle: Path) -> None:
    await asyncio.to_thread(_rewrite, bundle, lambda _n, d: d, {"notes.txt": b"planted"})
    report = await _verify(bundle)
    assert report.problems == ["notes.txt: not listed in the manifest"]


async def test_a_consecutive_event_with_a_foreign_link_is_named(bundle: Path) -> None:
    # Lines 2 and 3 are seqs 3 and 4: consecutive, so line 3 must link to line 2.
    change = _edit_line(3, lambda e: e.update(prev_hash="f" * 64))
    await asyncio.to_thread(_rewrite, bundle, _only("events.jsonl", change))
    problems = (await _verify(bundle)).problems
    assert "events.jsonl line 3 (seq 4): prev_hash is not the hash of seq 3" in problems


async def test_a_bundle_re_signed_with_another_key_fails_only_when_pinned(bundle: Path) -> None:
    """Someone rewrites a recording and the manifest and signs with their own key."""
    forged = b"a different recording"
    manifest = json.loads(_read(bundle, "manifest.json"))
    # checkpoint.json carries the real key's signature: the forger drops it.
    manifest["files"] = [f for f in manifest["files"] if f["name"] != "checkpoint.json"]
    for entry in manifest["files"]:
        if entry["name"] == "recordings/customer.webm":
            entry.update(sha256=hashlib.sha256(forged).hexdigest(), size=len(forged))
    public = OTHER_KEY.public_key()
    manifest.update(public_key=public_key_b64(public), key_id=key_id(public))
    data = json.dumps(manifest, sort_keys=True).encode()
    replaced = {
        "recordings/customer.webm": forged,
        "manifest.json": data,
        "manifest.sig": base64.b64encode(OTHER_KEY.sign(data)),
    }
    forge = lambda n, d: None if n == "checkpoint.json" else replaced.get(n, d)  # noqa: E731
    await asyncio.to_thread(_rewrite, bundle, forge)
    unpinned = await _verify(bundle, None)
    assert unpinned.ok and not unpinned.pinned and unpinned.key_id == key_id(public)
    pinned = await _verify(bundle, KEY)
    assert not pinned.ok and not pinned.pinned
    expected = f"manifest.sig: signed by key {key_id(public)}, not the expected key"
    assert any(p.startswith(expected) for p in pinned.problems), pinned.problems


async def test_a_different_expected_key_is_named(bundle: Path) -> None:
    report = await _verify(bundle, OTHER_KEY)
    assert not report.ok and not report.pinned
    assert report.problems == [
        f"manifest.sig: signed by key {key_id(KEY.public_key())}, "
        f"not the expected key {key_id(OTHER_KEY.public_key())}"
    ]


async def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "junk.zip"
    path.write_bytes(b"not a zip")
    report = await _verify(path)
    assert not report.ok and report.problems[0].startswith("junk.zip: not a readable zip")


async def test_a_changed_recording_blob_is_not_exported(
    db: Database, blobs: LocalBlobStore, media: Media, tmp_path: Path
) -> None:
    path = blobs.root / media.recording_key[:2] / media.recording_key
    await asyncio.to_thread(path.write_bytes, _flip_byte(media.recording))
    dest = tmp_path / "bad.zip"
    with pytest.raises(BlobCorrupt):
        await export_case(db, blobs, KEY, media.public_id, None, dest)
    assert await asyncio.to_thread(lambda: list(tmp_path.glob("*bad.zip*"))) == []
