"""The client's address and scheme behind a reverse proxy we trust (deploy/nginx.conf, HAProxy).

Behind a proxy every request comes from the proxy's address: the per-address limits on
identification and staff logins (``cases.limits``) would then count every customer together, and
five wrong card digits from anyone would lock out everyone. A request whose peer is one of the
``trusted`` networks (``CLOUDBRANCH_TRUSTED_PROXIES``) is read instead as coming from the
rightmost ``X-Forwarded-For`` entry that is not itself a trusted proxy: each proxy appends the
address it was connected from, so the entries to the left of that one are whatever the client
wrote and are never believed. The request's scheme is the last ``X-Forwarded-Proto`` value
(``http`` or ``https``: Secure cookies and HSTS behind a proxy that terminates TLS). A request
from any other peer keeps its own address, and the headers are ignored. Nothing else reads
``X-Forwarded-*``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from aiohttp.typedefs import Middleware

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Noted on a request from a trusted proxy: the client's address, and whether it used HTTPS.
REQ_CLIENT = web.RequestKey("client", str)
REQ_SECURE = web.RequestKey("secure", bool)

MAX_HOPS = 16  # entries read from the right; a longer chain is not a real one


def parse_networks(text: str) -> tuple[Network, ...]:
    """Comma-separated addresses or CIDR networks (``10.0.0.0/8, 127.0.0.1``).

    Raises ``ValueError`` naming the entry that is neither."""
    networks = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError as err:
            raise ValueError(f"not an address or network: {entry!r}") from err
    return tuple(networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(address: str | None, trusted: Sequence[Network]) -> bool:
    ip = _address(address or "")
    return ip is not None and any(ip in net for net in trusted)


def client_of(remote: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """The address a request is counted under: ``remote`` unless it is a trusted proxy, then
    the rightmost forwarded entry that is not (or the last trusted one reached, when the chain
    ends or holds something that is no address: a proxy we trust writes addresses only)."""
    client = remote or "unknown"
    if not _trusted(remote, trusted):
        return client
    entries = [e for header in forwarded_for for e in header.split(",")]
    for entry in reversed(entries[-MAX_HOPS:]):
        ip = _address(entry)
        if ip is None:
            break
        client = str(ip)
        if not any(ip in net for net in trusted):
            break
    return client


def middleware(trusted: Sequence[Network]) -> Middleware:
    """The outermost middleware: notes the client's address and scheme on the request (the
    request itself is not cloned: the response signals and the WebSocket see this one)."""

    @web.middleware
    async def forwarded(request: web.Request, handler: Handler) -> web.StreamResponse:
        if trusted and _trusted(request.remote, trusted):
            hops = request.headers.getall("X-Forwarded-For", [])
            request[REQ_CLIENT] = client_of(request.remote, hops, trusted)
            protos = request.headers.getall("X-Forwarded-Proto", [])
            proto = protos[-1].split(",")[-1].strip().lower() if protos else ""
            if proto in {"http", "https"}:
                request[REQ_SECURE] = proto == "https"
        return await handler(request)

    return forwarded


def client_address(request: web.Request) -> str:
    """The address failures are counted under (the proxy's client when it is trusted)."""
    return request.get(REQ_CLIENT) or request.remote or "unknown"


def is_secure(request: web.Request) -> bool:
    """HTTPS as the browser sees it (a trusted proxy may terminate TLS)."""
    secure = request.get(REQ_SECURE)
    return request.secure if secure is None else secure
