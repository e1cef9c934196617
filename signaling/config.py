"""Configuration of the signaling package."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SignalingConfig:
    """Limits of the WebSocket hub."""

    max_message_bytes: int = 64 * 1024
    outbound_queue_size: int = 256
    max_chat_chars: int = 2000
    average_handle_seconds: int = 240
    reconnect_grace_seconds: float = 20.0
    redis_url: str = ""  # the several-node backplane; not built yet (the server refuses it)

    def __post_init__(self) -> None:
        if self.max_message_bytes < 1024:
            raise ValueError("max_message_bytes must be at least 1024")
        if self.outbound_queue_size < 1:
            raise ValueError("outbound_queue_size must be positive")
