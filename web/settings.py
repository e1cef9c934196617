"""The one typed settings object, read from ``CLOUDBRANCH_*`` environment variables once.

It is split into each package's own config dataclass and passed down explicitly.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from media.config import MediaConfig
from signaling.config import SignalingConfig
from store.config import AuditConfig, S3Config, StoreConfig
from store.signing import decode_seed
from verification.challenges import PAUSE
from verification.config import VerificationConfig
from web.forwarded import Network, parse_networks

PREFIX = "CLOUDBRANCH_"
AUDIT_KEY_FILE = "audit-signing.key"


class SettingsError(ValueError):
    """An environment variable has a value we cannot use."""


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(PREFIX + name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{PREFIX}{name} must be a boolean, got {raw!r}")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(PREFIX + name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as err:
        raise SettingsError(f"{PREFIX}{name} must be an integer, got {raw!r}") from err


def _str(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(PREFIX + name)
    return default if raw is None or raw == "" else raw


def _networks(env: Mapping[str, str], name: str) -> tuple[Network, ...]:
    try:
        return parse_networks(_str(env, name, ""))
    except ValueError as err:
        raise SettingsError(f"{PREFIX}{name}: {err}") from err


def _secret(data_dir: Path) -> str:
    """Read the server secret from the data folder, creating it on first start."""
    path = data_dir / "secret.key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value


def _pause(raw: str) -> tuple[float, float]:
    """``"min,max"`` seconds of "hold still" (``"0"``: none); empty: the default."""
    if not raw.strip():
        return PAUSE
    parts = [p.strip() for p in raw.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError as err:
        raise ValueError(f'VERIFY_PAUSE must be "min,max" seconds, got {raw!r}') from err
    if len(values) == 1:
        return values[0], values[0]
    if len(values) != 2:
        raise ValueError(f'VERIFY_PAUSE must be "min,max" seconds, got {raw!r}')
    return values[0], values[1]


def _verification(env: Mapping[str, str]) -> VerificationConfig:
    models = _str(env, "MODELS_DIR", "")
    vocabulary = tuple(
        v.strip() for v in _str(env, "VERIFY_VOCABULARY", "").split(",") if v.strip()
    )
    try:
        return VerificationConfig(
            backend=_str(env, "FACE_BACKEND", "dlib"),
            models_dir=Path(models).resolve() if models else None,
            workers=_int(env, "FACE_WORKERS", 1),
            sample_fps=float(_int(env, "VERIFY_FPS", 10)),
            camera_fps=float(_int(env, "VERIFY_CAMERA_FPS", 30)),
            challenges=_int(env, "VERIFY_CHALLENGES", 3),
            vocabulary=vocabulary,
            pause=_pause(_str(env, "VERIFY_PAUSE", "")),
            replayable_plans=_str(env, "VERIFY_REPLAYABLE_PLANS", "") == "1",
        )
    except ValueError as err:
        raise SettingsError(f"{PREFIX}FACE_*/VERIFY_*: {err}") from err


def _audit(env: Mapping[str, str], data_dir: Path) -> AuditConfig:
    """The audit signing key (generated on first use into the data folder when not set)."""
    raw = _str(env, "AUDIT_SIGNING_KEY", "")
    try:
        seed = decode_seed(raw) if raw else None
    except ValueError as err:  # the message never quotes the key
        raise SettingsError(f"{PREFIX}AUDIT_SIGNING_KEY: {err}") from err
    minutes = _int(env, "AUDIT_CHECKPOINT_MINUTES", 10)
    retention = _int(env, "RETENTION_DAYS", 1826)
    try:
        return AuditConfig(data_dir / AUDIT_KEY_FILE, seed, minutes, retention)
    except ValueError as err:
        raise SettingsError(f"{PREFIX}AUDIT_CHECKPOINT_MINUTES/RETENTION_DAYS: {err}") from err


def _s3(env: Mapping[str, str]) -> S3Config | None:
    endpoint = _str(env, "BLOB_S3_ENDPOINT", "")
    if not endpoint:
        return None
    try:
        return S3Config(
            endpoint=endpoint,
            bucket=_str(env, "BLOB_S3_BUCKET", "cloudbranch"),
            access_key=_str(env, "BLOB_S3_ACCESS_KEY", ""),
            secret_key=_str(env, "BLOB_S3_SECRET_KEY", ""),
            region=_str(env, "BLOB_S3_REGION", "us-east-1"),
        )
    except ValueError as err:  # the message never quotes the secret key
        raise SettingsError(f"{PREFIX}BLOB_S3_*: {err}") from err


def check_supported(settings: Settings) -> None:
    """Refuse settings this version reads but cannot honour yet, rather than ignore them.

    docker-compose.yml describes the several-node deployment; until the Redis backplane
    exists, a node started with it would silently run alone.
    """
    if settings.signaling.redis_url:
        raise SettingsError(
            f"{PREFIX}REDIS_URL is set, but the Redis backplane is not built yet: "
            "this version runs a single node (unset it)"
        )


@dataclass(frozen=True, slots=True)
class WebConfig:
    """HTTP-side settings: where to listen, cookies, limits on identification attempts."""

    host: str = "127.0.0.1"
    port: int = 8080
    secret_key: str = field(default="", repr=False)
    cookie_secure: str = "auto"  # "auto": Secure over HTTPS and on loopback hosts
    session_hours: int = 8
    identify_attempts: int = 5  # failed identifications per client address, per window
    identify_window_seconds: int = 900
    identify_target_attempts: int = 10  # failed identifications per ID number, per window
    login_user_attempts: int = 10  # failed staff logins per username, per window
    cases_per_customer_hour: int = 6  # cases one customer may open in an hour
    consent_version: str = "2026-11-v1"
    default_lang: str = "zh-CN"
    # Reverse proxies whose X-Forwarded-For/-Proto are believed (web.forwarded); none by default.
    trusted_proxies: tuple[Network, ...] = ()

    def __post_init__(self) -> None:
        if self.cookie_secure not in {"auto", "always", "never"}:
            raise SettingsError("cookie_secure must be auto, always or never")
        if not 0 < self.port < 65536:
            raise SettingsError(f"port out of range: {self.port}")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the app factory needs, already split per package."""

    web: WebConfig
    store: StoreConfig
    media: MediaConfig
    signaling: SignalingConfig
    verification: VerificationConfig
    audit: AuditConfig
    data_dir: Path
    shared_data: Path
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from the environment (``os.environ`` by default)."""
        env = os.environ if env is None else env
        data_dir = Path(_str(env, "DATA_DIR", "var")).resolve()
        secret = _str(env, "SECRET_KEY", "") or _secret(data_dir)
        db_default = f"sqlite+aiosqlite:///{data_dir / 'cloudbranch.db'}"
        ice_servers = tuple(s for s in _str(env, "ICE_SERVERS", "").split(",") if s.strip())
        return cls(
            web=WebConfig(
                host=_str(env, "HOST", "127.0.0.1"),
                port=_int(env, "PORT", 8080),
                secret_key=secret,
                cookie_secure=_str(env, "COOKIE_SECURE", "auto"),
                session_hours=_int(env, "SESSION_HOURS", 8),
                identify_attempts=_int(env, "IDENTIFY_ATTEMPTS", 5),
                identify_window_seconds=_int(env, "IDENTIFY_WINDOW_SECONDS", 900),
                identify_target_attempts=_int(env, "IDENTIFY_TARGET_ATTEMPTS", 10),
                login_user_attempts=_int(env, "LOGIN_USER_ATTEMPTS", 10),
                cases_per_customer_hour=_int(env, "CASES_PER_CUSTOMER_HOUR", 6),
                default_lang=_str(env, "DEFAULT_LANG", "zh-CN"),
                trusted_proxies=_networks(env, "TRUSTED_PROXIES"),
            ),
            store=StoreConfig(
                database_url=_str(env, "DATABASE_URL", db_default),
                blob_dir=data_dir / "blobs",
                s3=_s3(env),
            ),
            media=MediaConfig(
                ice_loopback_only=_bool(env, "ICE_LOOPBACK_ONLY", False),
                ice_servers=ice_servers,
                turn_username=_str(env, "TURN_USERNAME", ""),
                turn_password=_str(env, "TURN_PASSWORD", ""),
                max_calls=_int(env, "MAX_CALLS", 50),
                # Every call is recorded (regulators ask for it); off only for load tests.
                recording_dir=data_dir / "recordings" if _bool(env, "RECORDING", True) else None,
            ),
            signaling=SignalingConfig(
                max_message_bytes=_int(env, "WS_MAX_MESSAGE_BYTES", 64 * 1024),
                reconnect_grace_seconds=_int(env, "RECONNECT_GRACE_SECONDS", 20),
                redis_url=_str(env, "REDIS_URL", ""),
            ),
            verification=_verification(env),
            audit=_audit(env, data_dir),
            data_dir=data_dir,
            shared_data=Path(_str(env, "SHARED_DATA", "../shared/data")).resolve(),
            log_level=_str(env, "LOG_LEVEL", "INFO"),
        )
