"""Configuration of the media package."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

_ICE_SCHEMES = ("stun:", "turn:", "turns:")


@dataclass(frozen=True, slots=True)
class MediaConfig:
    """ICE settings for the server's WebRTC endpoints.

    ``ice_loopback_only`` makes the server gather and accept only 127.0.0.1 candidates: tests and
    single-machine demos use it (aioice leaves loopback out of its host candidates otherwise).
    ``ice_servers`` are STUN/TURN URLs handed to browsers and used by the server.
    ``recording_dir`` is the spool folder of call recordings (None: calls are not recorded).
    """

    ice_loopback_only: bool = False
    ice_servers: tuple[str, ...] = field(default_factory=tuple)
    turn_username: str = ""
    turn_password: str = ""
    max_calls: int = 50
    recording_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.max_calls < 1:
            raise ValueError(f"max_calls must be at least 1, not {self.max_calls}")
        for url in self.ice_servers:
            if not url.strip().startswith(_ICE_SCHEMES):
                raise ValueError(f"ICE server URL must start with stun:, turn: or turns: ({url!r})")
