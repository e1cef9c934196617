"""The ``cloudbranch`` command, run in-process against a data folder in tmp_path."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import random
import secrets
import sqlite3
import zipfile
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image
from sqlalchemy import select

from banking.core import CustomerRef
from banking.demo import DEMO_PASSWORD
from banking.identity import luhn_check_digit, prc_id_check_char
from banking.sql import SqlCoreBanking
from store.audit import add_event
from store.blobs import LocalBlobStore
from store.db import open_database
from store.models import Case, Customer, Recording, ReferenceTemplate
from store.signing import key_id, public_key_b64
from web.accounts import StaffRef, verify_staff
from web.cli import main
from web.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
ID_NUMBER = "31010419850612001" + prc_id_check_char("31010419850612001")
CARD = "622202999988887" + luhn_check_digit("622202999988887")


def _shared_data() -> Path:
    raw = os.environ.get("CLOUDBRANCH_SHARED_DATA") or str(REPO_ROOT.parent / "shared" / "data")
    path = Path(raw).resolve()
    if not (path / "identity" / "face_recognition").is_dir():
        pytest.fail(f"shared test data not found at {path} (set CLOUDBRANCH_SHARED_DATA)")
    return path


@pytest.fixture(autouse=True)
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("CLOUDBRANCH_") and name != "CLOUDBRANCH_SHARED_DATA":
            monkeypatch.delenv(name)
    monkeypatch.setenv("CLOUDBRANCH_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("CLOUDBRANCH_SHARED_DATA", str(_shared_data()))
    return tmp_path / "var"


@pytest.fixture
def photo() -> Path:
    return _shared_data() / "identity" / "face_recognition" / "obama" / "obama2.jpg"


def _identify(name: str, id_number: str, last4: str) -> CustomerRef | None:
    async def run() -> CustomerRef | None:
        settings = Settings.from_env()
        db = await open_database(settings.store)
        try:
            blobs = LocalBlobStore(settings.store.blob_dir)
            banking = SqlCoreBanking(db, blobs, settings.web.secret_key)
            return await banking.identify(name, id_number, last4)
        finally:
            await db.close()

    return asyncio.run(run())


def _login(username: str, password: str) -> StaffRef | None:
    async def run() -> StaffRef | None:
        db = await open_database(Settings.from_env().store)
        try:
            return await verify_staff(db, username, password)
        finally:
            await db.close()

    return asyncio.run(run())


def _add_customer(photo: Path, id_number: str = ID_NUMBER, card: str = CARD) -> int:
    argv = ["customers", "add", "--name", "Barack Obama", "--id-number", id_number]
    argv += ["--card-number", card, "--photo", str(photo), "--phone", "13800138000"]
    return main(argv)


def test_migrate(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate"]) == 0
    assert (env / "cloudbranch.db").is_file()
    assert main(["migrate"]) == 0
    assert "migrated" in capsys.readouterr().out


def test_seed_demo_prints_logins_and_customers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["seed-demo"]) == 0
    out = capsys.readouterr().out
    for text in ("advisor1", "Advisor Wang", "auditor1", "admin", DEMO_PASSWORD, "王芳", "created"):
        assert text in out
    assert main(["seed-demo"]) == 0
    again = capsys.readouterr().out
    assert "existing" in again
    assert " created" not in again
    assert _login("advisor2", DEMO_PASSWORD) is not None


def test_add_customer_with_real_photo(photo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _add_customer(photo) == 0
    captured = capsys.readouterr()
    assert "Barack Obama" in captured.out
    assert ID_NUMBER[:4] + "*" * 10 + ID_NUMBER[-4:] in captured.out
    assert ID_NUMBER not in captured.out + captured.err
    ref = _identify("barack obama", ID_NUMBER, CARD[-4:])
    assert ref is not None and ref.name == "Barack Obama"


def test_bad_id_number_exits_2_naming_the_field(
    photo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = ID_NUMBER[:17] + ("0" if ID_NUMBER[17] != "0" else "1")
    assert _add_customer(photo, id_number=bad) == 2
    err = capsys.readouterr().err
    assert "id_number" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert bad not in err


def test_bad_card_number_exits_2(photo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _add_customer(photo, card=CARD[:-1] + str((int(CARD[-1]) + 1) % 10)) == 2
    assert "card_number" in capsys.readouterr().err


def test_unreadable_photo_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _add_customer(tmp_path / "missing.jpg") == 2
    assert "photo" in capsys.readouterr().err
    text_file = tmp_path / "not-a-photo.jpg"
    text_file.write_text("hello")
    assert _add_customer(text_file) == 2
    assert "photo" in capsys.readouterr().err


def test_duplicate_customer_exits_2(photo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _add_customer(photo) == 0
    assert _add_customer(photo) == 2
    assert "already exists" in capsys.readouterr().err


def test_staff_add(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CLOUDBRANCH_NEW_STAFF_PASSWORD", "a long enough password")
    argv = ["staff", "add", "--username", "advisor7", "--role", "advisor"]
    assert main([*argv, "--display-name", "Advisor Zhao"]) == 0
    assert "advisor7" in capsys.readouterr().out
    ref = _login("advisor7", "a long enough password")
    assert ref is not None and ref.display_name == "Advisor Zhao"
    assert main([*argv, "--display-name", "Again"]) == 2
    assert "taken" in capsys.readouterr().err


def test_staff_add_short_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CLOUDBRANCH_NEW_STAFF_PASSWORD", "short")
    argv = ["staff", "add", "--username", "x1", "--role", "admin", "--display-name", "X"]
    assert main(argv) == 2
    assert "at least 10" in capsys.readouterr().err


def test_staff_password_prompted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = iter(["prompted password", "prompted password"])
    monkeypatch.setattr("getpass.getpass", lambda _prompt="": next(answers))
    argv = ["staff", "add", "--username", "aud2", "--role", "auditor", "--display-name", "A"]
    assert main(argv) == 0
    assert _login("aud2", "prompted password") is not None


def test_usage_errors_return_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["staff", "add", "--username", "u", "--role", "boss", "--display-name", "U"]) == 2
    capsys.readouterr()


def _template_keys(customer_id: int) -> list[str]:
    async def run() -> list[str]:
        db = await open_database(Settings.from_env().store)
        try:
            async with db.session() as s:
                rows = await s.scalars(
                    select(ReferenceTemplate.model_key).where(
                        ReferenceTemplate.customer_id == customer_id
                    )
                )
                return list(rows)
        finally:
            await db.close()

    return asyncio.run(run())


def test_enrolment_stores_the_face_template(
    photo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _add_customer(photo) == 0
    ref = _identify("Barack Obama", ID_NUMBER, CARD[-4:])
    assert ref is not None
    assert [k.split("/")[0] for k in _template_keys(ref.id)] == ["dlib"]


@pytest.mark.parametrize(
    ("picture", "says"),
    [("no_face", "no face"), ("group", "faces")],
)
def test_a_photo_without_exactly_one_good_face_is_refused_and_nothing_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], picture: str, says: str
) -> None:
    if picture == "no_face":
        path = tmp_path / "wall.png"
        Image.new("RGB", (640, 480), (120, 130, 140)).save(path)
    else:
        path = next((_shared_data() / "identity/face_recognition/multi").iterdir())
    assert _add_customer(path) == 2
    err = capsys.readouterr().err
    assert "photo" in err and says in err.lower()
    assert _identify("Barack Obama", ID_NUMBER, CARD[-4:]) is None


# ---- the audit log ------------------------------------------------------------------------


def _append_events(count: int) -> None:
    async def run() -> None:
        db = await open_database(Settings.from_env().store)
        try:
            for i in range(count):
                async with db.session() as s, s.begin():
                    await add_event(s, action=f"cli.{i}", outcome="ok", actor_kind="system")
        finally:
            await db.close()

    asyncio.run(run())


def _tamper(env: Path, *statements: str) -> None:
    """Change the log as someone with the database file would: drop the trigger first."""
    with closing(sqlite3.connect(env / "cloudbranch.db")) as conn, conn:
        conn.execute("DROP TRIGGER audit_events_no_update")
        conn.execute("DROP TRIGGER audit_events_no_delete")
        for statement in statements:
            conn.execute(statement)


def _verify(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, Any]]:
    status = main(["audit", "verify", *extra])
    return status, json.loads(capsys.readouterr().out)


def test_audit_checkpoint_then_verify(
    env: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    assert main(["audit", "checkpoint"]) == 2
    assert "empty" in capsys.readouterr().err
    key_file = env / "audit-signing.key"
    assert key_file.stat().st_mode & 0o777 == 0o600  # generated on first use
    assert "generated a new audit signing key" in caplog.text
    _append_events(3)
    assert main(["audit", "checkpoint"]) == 0
    signed = json.loads(capsys.readouterr().out)
    assert signed["seq"] == 3 and len(signed["hash"]) == 64
    status, report = _verify(capsys)
    assert status == 0
    assert report == {"ok": True, "events": 3, "checkpoints": 1, "first_broken": None}
    status, report = _verify(capsys, "--public-key", signed["public_key"])
    assert status == 0 and report["ok"]
    assert key_file.read_text().strip() not in caplog.text  # the private key is never logged


def test_audit_verify_names_a_changed_event(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _append_events(4)
    assert main(["audit", "checkpoint"]) == 0
    capsys.readouterr()
    _tamper(env, "UPDATE audit_events SET outcome = 'refused' WHERE seq = 2")
    status, report = _verify(capsys)
    assert status == 1 and report["ok"] is False and report["events"] == 4
    assert report["first_broken"]["seq"] == 2
    assert "hash mismatch at seq 2" in report["first_broken"]["reason"]


def test_audit_verify_names_a_deleted_event(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _append_events(4)
    assert main(["audit", "checkpoint"]) == 0
    capsys.readouterr()
    _tamper(env, "DELETE FROM audit_events WHERE seq = 3")
    status, report = _verify(capsys)
    assert status == 1
    assert report["first_broken"]["seq"] == 3
    assert "seq gap after 2" in report["first_broken"]["reason"]


@pytest.mark.parametrize("garbage", ["zeros", "random"])
def test_audit_verify_checks_the_database_file_first(
    env: Path, capsys: pytest.CaptureFixture[str], garbage: str
) -> None:
    """Issue 12: a SQLite file whose last page was overwritten used to verify "ok"."""
    _append_events(40)
    assert main(["audit", "checkpoint"]) == 0
    capsys.readouterr()
    db_file = env / "cloudbranch.db"
    with closing(sqlite3.connect(db_file)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = conn.execute("PRAGMA page_size").fetchone()[0]
    with db_file.open("r+b") as fh:
        fh.seek(-page, os.SEEK_END)
        fh.write(bytes(page) if garbage == "zeros" else random.Random(7).randbytes(page))
    status = main(["audit", "verify"])
    report = json.loads(capsys.readouterr().out)
    assert status == 1 and report["ok"] is False
    assert report["first_broken"]["kind"] == "database_integrity"
    assert "integrity" in report["first_broken"]["reason"]


def test_audit_verify_with_a_swapped_key(capsys: pytest.CaptureFixture[str]) -> None:
    _append_events(2)
    assert main(["audit", "checkpoint"]) == 0
    capsys.readouterr()
    other = Ed25519PrivateKey.generate().public_key()
    status, report = _verify(capsys, "--public-key", public_key_b64(other))
    assert status == 1
    assert report["first_broken"]["kind"] == "checkpoint_key"
    assert main(["audit", "verify", "--public-key", "not a key"]) == 2
    assert "public key" in capsys.readouterr().err


def test_audit_verify_needs_a_key(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _append_events(1)
    assert main(["audit", "verify"]) == 2
    assert "CLOUDBRANCH_AUDIT_SIGNING_KEY" in capsys.readouterr().err
    assert not (env / "audit-signing.key").exists()  # verifying never makes a key


def test_audit_key_from_the_environment(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = bytes(range(32))
    monkeypatch.setenv("CLOUDBRANCH_AUDIT_SIGNING_KEY", base64.b64encode(seed).decode())
    _append_events(1)
    assert main(["audit", "checkpoint"]) == 0
    signed = json.loads(capsys.readouterr().out)
    assert signed["key_id"] == key_id(Ed25519PrivateKey.from_private_bytes(seed).public_key())
    assert not (env / "audit-signing.key").exists()
    assert _verify(capsys)[0] == 0


# ---- case bundles and retention -------------------------------------------------------------


def _add_closed_case(closed_at: datetime, recording: bytes = b"webm bytes") -> str:
    """A closed case with a customer recording and three events; its public id."""

    async def run() -> str:
        settings = Settings.from_env()
        db = await open_database(settings.store)
        try:
            blob = await LocalBlobStore(settings.store.blob_dir).put(recording)
            async with db.session() as s, s.begin():
                customer = Customer(
                    name="Zhang San",
                    id_number_hmac=secrets.token_hex(32),
                    id_number_masked="3101**********0012",
                    created_at=closed_at,
                )
                s.add(customer)
                await s.flush()
                case = Case(
                    public_id=secrets.token_hex(8),
                    customer_id=customer.id,
                    service="card_loss",
                    state="closed",
                    lang="zh-CN",
                    created_at=closed_at,
                    closed_at=closed_at,
                )
                s.add(case)
                await s.flush()
                s.add(
                    Recording(
                        case_id=case.id,
                        side="customer",
                        blob_key=blob,
                        content_type="video/webm",
                        size=len(recording),
                        duration_ms=1000,
                        offset_ms=0,
                        clock_zero=closed_at,
                        video_frames=25,
                        audio_frames=50,
                        dropped_frames=0,
                        stored_at=closed_at,
                    )
                )
                stored = {"side": "customer", "sha256": blob, "size": len(recording)}
                for action, detail in [
                    ("case.opened", {}),
                    ("recording.stored", stored),
                    ("case.closed", {}),
                ]:
                    await add_event(
                        s,
                        action=action,
                        outcome="ok",
                        actor_kind="system",
                        case_id=case.id,
                        detail=detail,
                    )
                return case.public_id
        finally:
            await db.close()

    return asyncio.run(run())


def _append_to_zip(path: Path, extra: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "a") as zf:
        for name, data in extra.items():
            zf.writestr(name, data)


def test_audit_export_then_verify_bundle(
    env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    public_id = _add_closed_case(datetime.now(UTC))
    out = tmp_path / "bundle.zip"
    assert main(["audit", "export", "--case", public_id, "--out", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["case"] == public_id and info["events"] == 3 and out.is_file()
    public = public_key_b64(
        Ed25519PrivateKey.from_private_bytes(
            base64.b64decode((env / "audit-signing.key").read_text())
        ).public_key()
    )
    # Offline: another machine, whose settings would not even parse.
    monkeypatch.setenv("CLOUDBRANCH_PORT", "not a number")
    monkeypatch.setenv("CLOUDBRANCH_DATA_DIR", str(tmp_path / "elsewhere"))
    assert main(["audit", "verify-bundle", str(out), "--public-key", public]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["pinned"] and report["key_id"] == info["key_id"]
    assert not (tmp_path / "elsewhere").exists()
    other = public_key_b64(Ed25519PrivateKey.generate().public_key())
    assert main(["audit", "verify-bundle", str(out), "--public-key", other]) == 1
    assert "not the expected key" in json.loads(capsys.readouterr().out)["problems"][0]
    assert main(["audit", "verify-bundle", str(out), "--public-key", "not a key"]) == 2
    assert "public key" in capsys.readouterr().err
    # Without a pinned key an intact bundle is only self-consistent: said, and not status 0.
    assert main(["audit", "verify-bundle", str(out)]) == 3
    captured = capsys.readouterr()
    assert json.loads(captured.out)["pinned"] is False
    assert "only that the bundle is self-consistent" in captured.err
    _append_to_zip(out, {"planted.txt": b"x"})
    assert main(["audit", "verify-bundle", str(out)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["problems"] == ["planted.txt: not listed in the manifest"]
    assert report["pinned"] is False


def test_audit_export_of_an_unknown_case_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate"]) == 0
    assert main(["audit", "export", "--case", "nope", "--out", str(tmp_path / "x.zip")]) == 2
    assert "no case" in capsys.readouterr().err
    assert not (tmp_path / "x.zip").exists()


def test_retention_run(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = datetime.now(UTC) - timedelta(days=6 * 365)
    _add_closed_case(old, b"old recording")
    _add_closed_case(datetime.now(UTC), b"new recording")
    assert main(["retention", "run", "--dry-run"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert planned == {
        "dry_run": True,
        "cases": 1,
        "recordings": 1,
        "evidence": 0,
        "blobs_deleted": 1,
        "bytes_freed": len(b"old recording"),
    }
    assert main(["retention", "run"]) == 0
    assert json.loads(capsys.readouterr().out) | {"dry_run": True} == planned
    assert main(["retention", "run"]) == 0
    assert json.loads(capsys.readouterr().out)["cases"] == 0
    later = (datetime.now(UTC) + timedelta(days=6 * 365)).isoformat()
    assert main(["retention", "run", "--dry-run", "--now", later]) == 0
    assert json.loads(capsys.readouterr().out)["cases"] == 1
    assert main(["retention", "run", "--now", "yesterday"]) == 2
    assert "ISO 8601" in capsys.readouterr().err
    assert main(["audit", "checkpoint"]) == 0
    capsys.readouterr()
    assert _verify(capsys)[0] == 0


def test_audit_verify_names_a_changed_recording(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _add_closed_case(datetime.now(UTC), b"the recording")
    assert main(["audit", "checkpoint"]) == 0
    capsys.readouterr()
    assert _verify(capsys)[0] == 0
    key = hashlib.sha256(b"the recording").hexdigest()
    (env / "blobs" / key[:2] / key).write_bytes(b"the recordinG")
    status, report = _verify(capsys)
    assert status == 1
    assert report["first_broken"]["seq"] == 2  # the recording.stored event
    assert report["first_broken"]["kind"] == "artifact"
    assert "no longer match" in report["first_broken"]["reason"]


def test_staff_deactivate_and_set_role(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CLOUDBRANCH_NEW_STAFF_PASSWORD", "a long password 1")
    add = ["staff", "add", "--username", "wang", "--role", "advisor", "--display-name", "W"]
    assert main(add) == 0
    assert main(["staff", "set-role", "wang", "supervisor"]) == 0
    assert "supervisor" in capsys.readouterr().out
    assert main(["staff", "deactivate", "Wang"]) == 0
    assert "deactivated" in capsys.readouterr().out
    assert _login("wang", "a long password 1") is None
    assert main(["staff", "activate", "wang"]) == 0
    assert _login("wang", "a long password 1") is not None
    assert main(["staff", "deactivate", "nobody"]) == 2
    assert "no staff member" in capsys.readouterr().err
