"""The reconnect grace survives a crash (issue 12, item 4): ``cloudbranch serve`` killed with
SIGKILL and started again on the same data; a waiting customer whose page reconnects within
the grace keeps the case and the place, one who does not is abandoned after it.

A real server process (``cloudbranch seed-demo`` and ``serve`` on a loopback port, face workers
off), real HTTP sessions and sockets, a real kill -9.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from banking.demo import DEMO_CUSTOMERS

REPO = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).parent / "cloudbranch"
GRACE = 6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    """One ``cloudbranch serve`` process on ``data``."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.base = f"http://127.0.0.1:{env['CLOUDBRANCH_PORT']}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                [str(CLI), "serve"],
                env=self.env,
                cwd=REPO,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, as in a terminal
            )

    async def healthy(self) -> None:
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                assert self.proc is not None and self.proc.poll() is None, self.tail()
                try:
                    async with http.get(self.base + "/healthz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError("the server did not answer /healthz:\n" + self.tail())

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]


@asynccontextmanager
async def node(tmp_path: Path, shared_data: Path, **extra: str) -> AsyncIterator[Node]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDBRANCH_")}
    env.update(
        CLOUDBRANCH_DATA_DIR=str(tmp_path / "data"),
        CLOUDBRANCH_HOST="127.0.0.1",
        CLOUDBRANCH_PORT=str(_free_port()),
        CLOUDBRANCH_SHARED_DATA=str(shared_data),
        CLOUDBRANCH_ICE_LOOPBACK_ONLY="1",
        CLOUDBRANCH_FACE_WORKERS="0",
        CLOUDBRANCH_RECONNECT_GRACE_SECONDS=str(GRACE),
        CLOUDBRANCH_COOKIE_SECURE="never",  # the test's client keeps cookies over plain HTTP
        CLOUDBRANCH_DEFAULT_LANG="en",
    )
    env.update(extra)
    log = tmp_path / "server.log"
    await asyncio.to_thread(_seed, env, log)
    server = Node(env, log)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


def _seed(env: dict[str, str], log: Path) -> None:
    with log.open("ab") as fh:
        subprocess.run([str(CLI), "seed-demo"], env=env, cwd=REPO, stdout=fh, stderr=fh, check=True)


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


async def _waiting_customer(base: str, who: int) -> aiohttp.ClientSession:
    """A demo customer's browser: identified, consented, device checked."""
    person = DEMO_CUSTOMERS[who]
    http = aiohttp.ClientSession(base_url=base, cookie_jar=aiohttp.CookieJar(unsafe=True))
    page = await (await http.get("/identify?service=card_loss")).text()
    form = {
        "csrf_token": _csrf(page),
        "service": "card_loss",
        "name": person.name,
        "id_number": person.id_number,
        "card_last4": person.card_number[-4:],
    }
    assert (await http.post("/identify", data=form, allow_redirects=False)).status == 303
    page = await (await http.get("/consent")).text()
    await http.post("/consent", data={"csrf_token": _csrf(page), "accept": "on"})
    page = await (await http.get("/device-check")).text()
    checked = {"csrf_token": _csrf(page), "camera": "ok", "mic": "ok", "network": "ok"}
    assert (await http.post("/device-check", data=checked, allow_redirects=False)).status == 303
    return http


async def _join(http: aiohttp.ClientSession, base: str) -> tuple[Any, str, dict[str, Any]]:
    """Open the page's socket and join (as the call page does on every welcome): the socket,
    the case's public id, the place in line."""
    ws = await http.ws_connect("/ws", origin=base)
    welcome = await _next(ws, "welcome")
    await ws.send_json({"type": "queue.join"})
    return ws, str(welcome["case_id"]), await _next(ws, "queue.position")


async def _next(ws: Any, kind: str, wait: float = 10) -> dict[str, Any]:
    while True:
        frame = await ws.receive(timeout=wait)
        assert frame.type == aiohttp.WSMsgType.TEXT, f"socket ended waiting for {kind}: {frame}"
        data: dict[str, Any] = json.loads(frame.data)
        if data["type"] == kind:
            return data


def _state(data: Path, public_id: str) -> str:
    with closing(sqlite3.connect(data / "cloudbranch.db", timeout=10)) as conn:
        row = conn.execute("SELECT state FROM cases WHERE public_id = ?", (public_id,)).fetchone()
    return str(row[0])


@pytest.fixture
async def sessions() -> AsyncIterator[list[aiohttp.ClientSession]]:
    opened: list[aiohttp.ClientSession] = []
    yield opened
    for http in opened:
        await http.close()


async def test_a_waiting_customer_who_comes_back_after_a_crash_keeps_the_place(
    tmp_path: Path, shared_data: Path, sessions: list[aiohttp.ClientSession]
) -> None:
    async with node(tmp_path, shared_data) as server:
        server.start()
        await server.healthy()
        gone = await _waiting_customer(server.base, 0)  # first in line; never comes back
        back = await _waiting_customer(server.base, 1)
        sessions += [gone, back]
        gone_ws, gone_case, first = await _join(gone, server.base)
        back_ws, back_case, second = await _join(back, server.base)
        assert (first["position"], second["position"]) == (1, 2)
        await asyncio.to_thread(server.kill)  # kill -9: no shutdown, no goodbye
        await gone_ws.close()
        await back_ws.close()

        server.start()
        await server.healthy()
        ws, case, place = await _join(back, server.base)  # the page reconnects on its own
        assert case == back_case
        assert (place["position"], place["size"]) == (2, 2), "the place was kept"
        # The one who did not come back is abandoned after the grace; the other moves up.
        moved = await _next(ws, "queue.position", wait=GRACE + 10)
        assert (moved["position"], moved["size"]) == (1, 1)
        await ws.close()
        data = tmp_path / "data"
        assert (_state(data, gone_case), _state(data, back_case)) == ("abandoned", "queued")


async def test_ctrl_c_stops_the_server_and_its_face_workers_without_a_traceback(
    tmp_path: Path, shared_data: Path
) -> None:
    """Issue 12: the face worker printed a KeyboardInterrupt traceback at every Ctrl-C."""
    async with node(tmp_path, shared_data, CLOUDBRANCH_FACE_WORKERS="1") as server:
        server.start()
        await server.healthy()
        assert server.proc is not None
        await asyncio.sleep(2)  # the worker has loaded its engine
        os.killpg(server.proc.pid, signal.SIGINT)  # what Ctrl-C sends: the whole group
        code = await asyncio.to_thread(server.proc.wait, 30)
        log = server.tail()
        assert code == 0, log
        assert "KeyboardInterrupt" not in log and "Traceback" not in log, log
