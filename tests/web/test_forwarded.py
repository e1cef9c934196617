"""Behind the shipped reverse proxy (deploy/nginx.conf, run by a real nginx): each customer is
counted under their own address, a forged X-Forwarded-For buys nothing, and the WebSocket
upgrades. Without it, every customer came from the proxy's address: three wrong card digits from
one customer locked the identification page for all of them."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp import ClientSession, CookieJar, TCPConnector

from tests.web.conftest import Person, World, consent, identify, make_settings, running_world
from tests.web.test_ws import receive
from web.forwarded import client_of, parse_networks
from web.settings import SettingsError

REPO = Path(__file__).resolve().parents[2]
PROXY_OUT = "127.0.0.2"  # the address nginx connects to the app from (proxy_bind)
TRUSTED = parse_networks(f"{PROXY_OUT}/32")


# ---- the rule --------------------------------------------------------------------------------


def test_a_peer_that_is_not_a_trusted_proxy_is_counted_as_itself() -> None:
    assert client_of("203.0.113.7", ["198.51.100.1"], TRUSTED) == "203.0.113.7"
    assert client_of("203.0.113.7", [], ()) == "203.0.113.7"


def test_behind_a_trusted_proxy_the_address_it_appended_counts() -> None:
    assert client_of(PROXY_OUT, ["203.0.113.7"], TRUSTED) == "203.0.113.7"
    # What the client wrote itself is to the left of what the proxy appended: never believed.
    assert client_of(PROXY_OUT, ["198.51.100.1, 203.0.113.7"], TRUSTED) == "203.0.113.7"
    assert client_of(PROXY_OUT, ["not-an-address, 203.0.113.7"], TRUSTED) == "203.0.113.7"


def test_a_chain_of_trusted_proxies_is_walked_to_the_first_untrusted_hop() -> None:
    trusted = parse_networks("10.0.0.0/8, 127.0.0.2")
    hops = ["198.51.100.1, 203.0.113.7", "10.1.2.3"]  # two headers, as a second proxy adds
    assert client_of(PROXY_OUT, hops, trusted) == "203.0.113.7"
    assert client_of(PROXY_OUT, ["garbage, 10.1.2.3"], trusted) == "10.1.2.3"
    assert client_of(PROXY_OUT, [], trusted) == PROXY_OUT


def test_a_trusted_proxies_setting_that_is_no_network_is_refused_by_name(
    tmp_path: Path, shared_data: Path
) -> None:
    with pytest.raises(SettingsError, match=r"TRUSTED_PROXIES.*'10\.0\.0\.300'"):
        make_settings(tmp_path, shared_data, CLOUDBRANCH_TRUSTED_PROXIES="10.0.0.0/8,10.0.0.300")
    assert make_settings(tmp_path, shared_data).web.trusted_proxies == ()


# ---- through a real nginx ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _shipped_config(app_port: int, port: int, folder: Path) -> str:
    """deploy/nginx.conf with the two nodes replaced by the test's app, on loopback."""
    conf = (REPO / "deploy" / "nginx.conf").read_text()
    conf, nodes = re.subn(
        r"(\n\s*server\s+app\d:8080[^;]*;)+", f"\n server 127.0.0.1:{app_port};", conf
    )
    assert nodes == 1, "deploy/nginx.conf no longer lists its nodes as app1/app2"
    conf, listens = re.subn(r"listen\s+8080;", f"listen 127.0.0.1:{port};", conf)
    assert listens == 1
    conf = re.sub(r"pid\s+[^;]+;", f"pid {folder}/nginx.pid;", conf)
    conf = re.sub(r"access_log\s+/dev/stdout;", f"access_log {folder}/access.log;", conf)
    conf = re.sub(r"error_log\s+/dev/stderr", f"error_log {folder}/error.log", conf)
    temp = (
        "".join(
            f" {kind}_temp_path {folder}/{kind};" for kind in ("client_body", "proxy", "fastcgi")
        )
        + f" uwsgi_temp_path {folder}/uwsgi; scgi_temp_path {folder}/scgi;"
    )
    conf = conf.replace("http {", f"http {{ proxy_bind {PROXY_OUT};{temp}", 1)
    user = "user root;\n" if os.geteuid() == 0 else ""
    return user + conf


@contextmanager
def shipped_nginx(app_port: int) -> Iterator[str]:
    """The shipped proxy in front of ``app_port``; yields its origin."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise RuntimeError("nginx is not installed (make apt-deps installs it)")
    folder = Path(tempfile.mkdtemp(prefix="cloudbranch-nginx-"))
    port = _free_port()
    (folder / "nginx.conf").write_text(_shipped_config(app_port, port, folder))
    cmd = [nginx, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-e", str(folder / "e.log")]
    proc = subprocess.Popen([*cmd, "-g", "daemon off;"], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise RuntimeError(f"nginx did not start: {err}") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


@asynccontextmanager
async def browser_at(origin: str, source: str) -> AsyncIterator[Any]:
    """A browser on the machine ``source`` (a loopback address of its own) going through the
    proxy at ``origin``."""
    jar = CookieJar(unsafe=True, treat_as_secure_origin=[origin])
    connector = TCPConnector(local_addr=(source, 0))
    async with ClientSession(origin, cookie_jar=jar, connector=connector) as session:
        yield cast(Any, session)  # the page helpers take a test client; the calls are the same


@pytest.fixture
async def proxied(tmp_path: Path, shared_data: Path) -> AsyncIterator[tuple[World, str]]:
    """The app, trusting the proxy's address, behind the shipped nginx: (world, nginx origin)."""
    settings = make_settings(tmp_path, shared_data, CLOUDBRANCH_TRUSTED_PROXIES=f"{PROXY_OUT}/32")
    async with running_world(settings, shared_data) as world:
        assert world.server.port is not None
        with shipped_nginx(world.server.port) as origin:
            yield world, origin


async def test_behind_the_proxy_one_customers_failures_do_not_lock_out_another(
    proxied: tuple[World, str],
) -> None:
    world, origin = proxied
    wrong = Person(world.ada.name, world.ada.id_number, "9999")
    async with browser_at(origin, "127.0.0.3") as mallory:
        for _ in range(3):  # the test settings allow three failures per address
            assert (await identify(mallory, wrong))[0] == 400
        assert (await identify(mallory, world.ada))[0] == 429
        # Naming another address in the header changes nothing: nginx appends the real one.
        mallory.headers["X-Forwarded-For"] = "127.0.0.4"
        assert (await identify(mallory, world.ada))[0] == 429
    async with browser_at(origin, "127.0.0.4") as grace:
        assert (await identify(grace, world.grace))[0] == 303


async def test_through_the_proxy_the_customer_reaches_the_call_socket(
    proxied: tuple[World, str],
) -> None:
    world, origin = proxied
    async with browser_at(origin, "127.0.0.3") as ada:
        assert (await identify(ada, world.ada))[0] == 303
        await consent(ada)
        # A browser sends its page's origin, port included: the proxy must pass the Host it
        # was asked for (with the port), or the same-origin check refuses.
        ws = await ada.ws_connect("/ws", origin=origin)
        assert (await receive(ws, "welcome"))["role"] == "customer"
        await ws.close()


async def test_without_trusting_the_proxy_its_headers_are_ignored(world: World) -> None:
    """The default: a direct peer that sends X-Forwarded-For is counted as itself."""
    client = await world.make_client()
    wrong = Person(world.ada.name, world.ada.id_number, "9999")
    for n in range(3):
        client.session.headers["X-Forwarded-For"] = f"198.51.100.{n}"
        assert (await identify(client, wrong))[0] == 400
    assert (await identify(client, world.ada))[0] == 429
