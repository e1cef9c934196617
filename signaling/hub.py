"""The WebSocket hub: who is connected, and a bounded outbound queue per connection.

The hub knows nothing of aiohttp: a connection is given a ``send`` coroutine function and a
``close`` one by the endpoint that owns the socket. Messages to a principal (``"advisor:7"``,
``"customer:<case>"``) go to each of its connections without waiting: a connection whose queue
is full (in messages or in bytes) is too slow to keep up and is closed rather than allowed to
hold memory without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from signaling.config import SignalingConfig
from signaling.messages import Codec, ServerMessage

log = logging.getLogger(__name__)

Send = Callable[[str], Awaitable[None]]
Close = Callable[[int, str], Coroutine[Any, Any, None]]

CLOSE_TOO_SLOW = 4008
CLOSE_SHUTDOWN = 1001
CLOSE_SUPERSEDED = 4409  # the customer started again elsewhere: this case was abandoned


def utf8_size(text: str) -> int:
    """Bytes ``text`` takes on the wire (no copy for ASCII, the common case)."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


class Connection:
    """One socket: a queue bounded in messages and in bytes, drained by one owned writer task.
    A message counts towards the bytes until it has been sent."""

    def __init__(
        self, principal: str, send: Send, close: Close, queue_size: int, queue_bytes: int
    ) -> None:
        self.principal = principal
        self._send = send
        self._close = close
        self._queue: asyncio.Queue[tuple[str, int]] = asyncio.Queue(maxsize=queue_size)
        self._max_bytes = queue_bytes
        self.queued_bytes = 0
        self._writer = asyncio.create_task(self._drain(), name=f"ws-writer:{principal}")
        self.closed = False

    def push(self, msg: ServerMessage) -> bool:
        """Queue a message; False (and the connection closes) when the queue is full."""
        if self.closed:
            return False
        text = Codec.encode(msg)
        size = utf8_size(text)
        try:
            if self.queued_bytes + size > self._max_bytes:
                raise asyncio.QueueFull
            self._queue.put_nowait((text, size))
        except asyncio.QueueFull:
            log.warning("closing slow connection", extra={"principal": self.principal})
            self._schedule_close(CLOSE_TOO_SLOW, "too slow")
            return False
        self.queued_bytes += size
        return True

    async def _drain(self) -> None:
        while True:
            text, size = await self._queue.get()
            try:
                await self._send(text)
            except (ConnectionError, RuntimeError):
                log.debug("send failed; the reader will notice the close")
                return
            finally:
                self.queued_bytes -= size
                self._queue.task_done()

    async def flush(self) -> None:
        """Wait until every queued message has been sent (callers bound the wait)."""
        if not self.closed and not self._writer.done():
            await self._queue.join()

    def close_soon(self, code: int, reason: str) -> None:
        """Close the socket in the background (messages still queued are dropped)."""
        if not self.closed:
            self._schedule_close(code, reason)

    def _schedule_close(self, code: int, reason: str) -> None:
        self.closed = True
        self._writer.cancel()
        # The close runs as the writer's replacement so that push() never awaits.
        self._writer = asyncio.create_task(self._close(code, reason), name="ws-close")

    async def aclose(self, code: int = CLOSE_SHUTDOWN, reason: str = "") -> None:
        """Stop the writer and close the socket."""
        if not self.closed:
            self.closed = True
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, RuntimeError):
                await self._writer
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._close(code, reason)
            return
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, RuntimeError):
            await self._writer


class Hub:
    """Registry of live connections by principal."""

    def __init__(self, config: SignalingConfig) -> None:
        self.config = config
        self.codec = Codec(config.max_message_bytes)
        self._by_principal: dict[str, set[Connection]] = {}

    def attach(self, principal: str, send: Send, close: Close) -> Connection:
        """Register a new connection for ``principal``."""
        cfg = self.config
        conn = Connection(principal, send, close, cfg.outbound_queue_size, cfg.outbound_queue_bytes)
        self._by_principal.setdefault(principal, set()).add(conn)
        return conn

    def detach(self, conn: Connection) -> bool:
        """Forget a connection; True when it was the principal's last one."""
        conns = self._by_principal.get(conn.principal)
        if conns is None:
            return True
        conns.discard(conn)
        if not conns:
            del self._by_principal[conn.principal]
            return True
        return False

    def has_room(self, principal: str) -> bool:
        """Whether ``principal`` may open one more socket (``max_sockets_per_principal``)."""
        return len(self._by_principal.get(principal, ())) < self.config.max_sockets_per_principal

    def is_connected(self, principal: str) -> bool:
        """Whether the principal has at least one open connection."""
        return bool(self._by_principal.get(principal))

    def send(self, principal: str, msg: ServerMessage) -> int:
        """Queue ``msg`` for every connection of ``principal``; returns how many took it."""
        return sum(conn.push(msg) for conn in list(self._by_principal.get(principal, ())))

    def close_principal(self, principal: str, code: int, reason: str) -> int:
        """Close every connection of ``principal`` for good, without waiting for the closing
        handshakes (each runs as that connection's writer); returns how many there were."""
        conns = [c for c in self._by_principal.get(principal, ()) if not c.closed]
        for conn in conns:
            conn.close_soon(code, reason)
        return len(conns)

    async def close_all(self, flush_seconds: float = 1.0) -> None:
        """Close every connection (graceful shutdown), sending what is queued first."""
        conns = [c for group in self._by_principal.values() for c in group]
        self._by_principal.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(flush_seconds):
                await asyncio.gather(*(c.flush() for c in conns))
        await asyncio.gather(*(c.aclose(CLOSE_SHUTDOWN, "server shutdown") for c in conns))
