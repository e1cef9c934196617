"""ICE settings: the server's ``RTCConfiguration``, the browsers' ICE servers, loopback-only mode.

Loopback-only mode exists for tests and single-machine demos. aioice leaves 127.0.0.1 out of
its host candidates (``aioice.ice.get_host_addresses``) and offers no option to change that, so
:func:`enable_loopback_ice` wraps that one function. The wrapper is inert: it returns loopback
only inside :func:`loopback_gathering` (a ``ContextVar`` scope, so it follows the task that sets
a local description and the tasks aiortc spawns from it); every other ICE agent in the process,
and every gathering outside the scope, sees aioice's own behaviour.
"""

from __future__ import annotations

import contextvars
import ipaddress
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer

from media.config import MediaConfig
from media.errors import MediaError

logger = logging.getLogger(__name__)

LOOPBACK_ADDRESS = "127.0.0.1"
_MARK = "_cloudbranch_loopback_scope"

BrowserIceServer = dict[str, str | list[str]]
HostAddresses = Callable[[bool, bool], list[str]]


def _split_urls(config: MediaConfig) -> tuple[list[str], list[str]]:
    """Split the configured URLs into (STUN, TURN/TURNS), whitespace removed."""
    urls = [url.strip() for url in config.ice_servers if url.strip()]
    stun = [url for url in urls if url.startswith("stun:")]
    turn = [url for url in urls if url.startswith(("turn:", "turns:"))]
    return stun, turn


def browser_ice_servers(config: MediaConfig) -> list[BrowserIceServer]:
    """The ``iceServers`` list for browsers' ``RTCPeerConnection`` (TURN carries credentials)."""
    stun, turn = _split_urls(config)
    servers: list[BrowserIceServer] = []
    if stun:
        servers.append({"urls": stun})
    if turn:
        entry: BrowserIceServer = {"urls": turn}
        if config.turn_username:
            entry["username"] = config.turn_username
            entry["credential"] = config.turn_password
        servers.append(entry)
    return servers


def server_rtc_configuration(config: MediaConfig) -> RTCConfiguration:
    """The server's ``RTCConfiguration``.

    Always passes an explicit list: aiortc falls back to a public Google STUN server when
    ``iceServers`` is None, which would send traffic off the machine. In loopback-only mode the
    list is empty (a STUN/TURN server is unreachable from loopback and would only add delay).
    """
    if config.ice_loopback_only:
        return RTCConfiguration(iceServers=[])
    servers = [
        RTCIceServer(
            urls=entry["urls"],
            username=_optional(entry.get("username")),
            credential=_optional(entry.get("credential")),
        )
        for entry in browser_ice_servers(config)
    ]
    return RTCConfiguration(iceServers=servers)


def _optional(value: str | list[str] | None) -> str | None:
    return value if isinstance(value, str) else None


def is_loopback_candidate(line: str) -> bool:
    """Whether an ``a=candidate:`` (or ``candidate:``) SDP line names a loopback address."""
    fields = line.split()
    if len(fields) < 6:
        return False
    try:
        return ipaddress.ip_address(fields[4]).is_loopback
    except ValueError:  # an mDNS name such as "….local" or garbage
        return False


def keep_loopback_candidates(sdp: str) -> str:
    """Drop every ``a=candidate`` line of ``sdp`` whose address is not loopback."""
    lines = sdp.splitlines()
    kept = [
        line
        for line in lines
        if not line.startswith("a=candidate:") or is_loopback_candidate(line[2:])
    ]
    dropped = len(lines) - len(kept)
    if dropped:
        logger.debug("loopback-only ICE: ignored %d remote candidates", dropped)
    return "\r\n".join(kept) + "\r\n"


def enable_loopback_ice() -> None:
    """Install the loopback-aware wrapper of ``aioice.ice.get_host_addresses``. Idempotent.

    Called explicitly (never at import) by whoever opens a loopback-only ``CallManager``; the
    wrapper changes nothing until :func:`loopback_gathering` is entered.
    """
    current: HostAddresses = aioice.ice.get_host_addresses
    if hasattr(current, _MARK):
        return
    scope: contextvars.ContextVar[bool] = contextvars.ContextVar(_MARK, default=False)

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        if scope.get():
            return [LOOPBACK_ADDRESS] if use_ipv4 else []
        return current(use_ipv4, use_ipv6)

    setattr(get_host_addresses, _MARK, scope)
    aioice.ice.get_host_addresses = get_host_addresses
    logger.info("loopback-only ICE enabled (aioice host addresses wrapped)")


@contextmanager
def loopback_gathering() -> Iterator[None]:
    """Within this scope, aioice gathers exactly 127.0.0.1 (see :func:`enable_loopback_ice`)."""
    scope = getattr(aioice.ice.get_host_addresses, _MARK, None)
    if not isinstance(scope, contextvars.ContextVar):
        raise MediaError("loopback-only ICE needs enable_loopback_ice() first")
    token = scope.set(True)
    try:
        yield
    finally:
        scope.reset(token)
