"""Settings from CLOUDBRANCH_* variables, and what the server refuses to start with."""

from __future__ import annotations

from pathlib import Path

import pytest

from web.app import create_app
from web.cli import main
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
        ("CLOUDBRANCH_BLOB_S3_ENDPOINT", "http://127.0.0.1:9000", "S3 blob store is not built"),
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
