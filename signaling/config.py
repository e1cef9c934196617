"""Configuration of the signaling package."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SignalingConfig:
    """Limits of the WebSocket hub."""

    max_message_bytes: int = 64 * 1024
    outbound_queue_size: int = 256
    # Bytes waiting to be sent on one socket: a few of the largest messages (an advisor's
    # co-browse batch, up to 1 MiB), where 256 of them could hold 256 MiB.
    outbound_queue_bytes: int = 4 * 1024 * 1024
    max_chat_chars: int = 2000
    # Open sockets of one principal (a customer's case, an advisor): a few tabs, not thousands.
    max_sockets_per_principal: int = 4
    average_handle_seconds: int = 240
    reconnect_grace_seconds: float = 20.0
    redis_url: str = ""  # the several-node backplane; not built yet (the server refuses it)

    def __post_init__(self) -> None:
        if self.max_message_bytes < 1024:
            raise ValueError("max_message_bytes must be at least 1024")
        if self.max_sockets_per_principal < 1:
            raise ValueError("max_sockets_per_principal must be positive")
        if self.outbound_queue_size < 1:
            raise ValueError("outbound_queue_size must be positive")
        if self.outbound_queue_bytes < 2 * 1024 * 1024:
            raise ValueError("outbound_queue_bytes must be at least 2 MiB (two co-browse batches)")
