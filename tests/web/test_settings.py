"""Settings from CLOUDBRANCH_* variables, and what the server refuses to start with."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from store.audit import add_event
from store.checkpoints import verify_log
from store.db import open_database
from store.signing import find_signing_key
from tests.web.conftest import make_settings
from web.app import create_app
from web.cli import main
from web.keys import DB
from web.settings import Settings, SettingsError


def test_defaults_are_embedded_and_the_secret_is_kept(tmp_path: Path) -> None:
    env = {"CLOUDBRANCH_DATA_DIR": str(tmp_path)}
    first = Settings.from_env(env)
    assert first.store.database_url.startswith("sqlite+aiosqlite:///")
    assert first.web.port == 8080 and first.web.host == "127.0.0.1"
    assert len(first.web.secret_key) > 40
    assert Settings.from_env(env).web.secret_key == first.web.secret_key
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
    assert first.web.secret_key not in repr(first)


def test_values_are_typed_and_bad_ones_named(tmp_path: Path) -> None:
    env = {"CLOUDBRANCH_DATA_DIR": str(tmp_path), "CLOUDBRANCH_SECRET_KEY": "k"}
    parsed = Settings.from_env(
        {
            **env,
            "CLOUDBRANCH_PORT": "9000",
            "CLOUDBRANCH_ICE_LOOPBACK_ONLY": "yes",
            "CLOUDBRANCH_ICE_SERVERS": "stun:stun.example:3478,turn:turn.example:3478",
        }
    )
    assert parsed.web.port == 9000 and parsed.media.ice_loopback_only
    assert len(parsed.media.ice_servers) == 2
    with pytest.raises(SettingsError, match="CLOUDBRANCH_PORT must be an integer"):
        Settings.from_env({**env, "CLOUDBRANCH_PORT": "eighty"})
    with pytest.raises(SettingsError, match="CLOUDBRANCH_ICE_LOOPBACK_ONLY must be a boolean"):
        Settings.from_env({**env, "CLOUDBRANCH_ICE_LOOPBACK_ONLY": "maybe"})


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("CLOUDBRANCH_REDIS_URL", "redis://127.0.0.1:6379/0", "Redis backplane is not built"),
    ],
)
def test_several_node_settings_are_refused_not_ignored(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    value: str,
    says: str,
) -> None:
    env = {"CLOUDBRANCH_DATA_DIR": str(tmp_path), name: value}
    with pytest.raises(SettingsError, match=says):
        create_app(Settings.from_env(env))
    for key, val in env.items():
        monkeypatch.setenv(key, val)
    assert main(["serve"]) == 2
    assert says in capsys.readouterr().err


def test_s3_settings_are_read_and_bad_ones_named(tmp_path: Path) -> None:
    env = {"CLOUDBRANCH_DATA_DIR": str(tmp_path), "CLOUDBRANCH_SECRET_KEY": "k"}
    assert Settings.from_env(env).store.s3 is None
    s3_env = {
        **env,
        "CLOUDBRANCH_BLOB_S3_ENDPOINT": "http://minio:9000",
        "CLOUDBRANCH_BLOB_S3_ACCESS_KEY": "cloudbranch",
        "CLOUDBRANCH_BLOB_S3_SECRET_KEY": "s3-secret-value",
        "CLOUDBRANCH_BLOB_S3_REGION": "eu-central-1",
    }
    s3 = Settings.from_env(s3_env).store.s3
    assert s3 is not None and s3.bucket == "cloudbranch" and s3.region == "eu-central-1"
    assert s3.secret_key == "s3-secret-value" and "s3-secret-value" not in repr(s3)
    for name, bad in (
        ("CLOUDBRANCH_BLOB_S3_SECRET_KEY", ""),
        ("CLOUDBRANCH_BLOB_S3_ENDPOINT", "minio:9000"),
        ("CLOUDBRANCH_BLOB_S3_ENDPOINT", "http://u:s3-secret-value@minio:9000"),
    ):
        with pytest.raises(SettingsError, match="CLOUDBRANCH_BLOB_S3_") as err:
            Settings.from_env({**s3_env, name: bad})
        assert "s3-secret-value" not in str(err.value)


def test_audit_settings(tmp_path: Path) -> None:
    env = {"CLOUDBRANCH_DATA_DIR": str(tmp_path), "CLOUDBRANCH_SECRET_KEY": "k"}
    default = Settings.from_env(env).audit
    assert default.checkpoint_minutes == 10 and default.signing_seed is None
    assert default.key_file == tmp_path / "audit-signing.key"
    assert not default.key_file.exists()  # made on first use, not by reading settings
    seed = base64.b64encode(bytes(range(32))).decode()
    given = Settings.from_env(
        {
            **env,
            "CLOUDBRANCH_AUDIT_SIGNING_KEY": seed,
            "CLOUDBRANCH_AUDIT_CHECKPOINT_MINUTES": "0",
        }
    )
    assert given.audit.signing_seed == bytes(range(32)) and given.audit.checkpoint_minutes == 0
    assert seed not in repr(given) and "signing_seed" not in repr(given)
    for bad in ("not base64!", base64.b64encode(b"short").decode()):
        with pytest.raises(SettingsError, match="CLOUDBRANCH_AUDIT_SIGNING_KEY") as err:
            Settings.from_env({**env, "CLOUDBRANCH_AUDIT_SIGNING_KEY": bad})
        assert bad not in str(err.value)
    with pytest.raises(SettingsError, match="CLOUDBRANCH_AUDIT_CHECKPOINT_MINUTES"):
        Settings.from_env({**env, "CLOUDBRANCH_AUDIT_CHECKPOINT_MINUTES": "-1"})


async def test_the_server_signs_checkpoints_in_an_owned_task(
    tmp_path: Path, shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, shared_data)
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    try:
        tasks = [t for t in asyncio.all_tasks() if t.get_name() == "audit-checkpoints"]
        assert len(tasks) == 1 and not tasks[0].done()
        assert settings.audit.key_file.stat().st_mode & 0o777 == 0o600
        assert "generated a new audit signing key" in caplog.text
        async with server.app[DB].session() as s, s.begin():
            await add_event(s, action="served", outcome="ok", actor_kind="system")
    finally:
        await server.close()
    assert tasks[0].cancelled()
    # On the way down the server signed the head it had reached.
    key = find_signing_key(settings.audit)
    assert key is not None
    db = await open_database(settings.store)
    try:
        report = await verify_log(db, key.public_key())
    finally:
        await db.close()
    assert (report.ok, report.events, report.checkpoints) == (True, 1, 1)
