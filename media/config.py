"""Configuration of the media package."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class MediaConfig:
    """ICE settings for the server's WebRTC endpoints.

    ``ice_loopback_only`` makes the server gather and accept only 127.0.0.1 candidates: tests and
    single-machine demos use it (aioice leaves loopback out of its host candidates otherwise).
    ``ice_servers`` are STUN/TURN URLs handed to browsers and used by the server.
    """

    ice_loopback_only: bool = False
    ice_servers: tuple[str, ...] = field(default_factory=tuple)
    turn_username: str = ""
    turn_password: str = ""
    max_calls: int = 50
