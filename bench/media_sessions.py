"""Benchmark: N simultaneous customer↔advisor video sessions through the real server.

For each N a fresh ``cloudbranch serve`` runs as its own process (a temporary data folder, a
free 127.0.0.1 port, loopback-only ICE), with N customers and N advisors enrolled beforehand by
``cloudbranch customers add`` / ``cloudbranch staff add``. Client processes
(``bench/_media_clients.py``, two sessions each) drive the same HTTP + WebSocket flow as the
pages (identify, consent, queue; staff login, presence, accept; ``webrtc.offer``/``answer``) and
then send 640×480 30 fps moving VP8 video and a tone both ways. The server's CPU (user + system)
is measured over a window that starts once every call's media flows; frame rates are counted at
the receiving clients. At the end every call is hung up with ``call.hangup`` and the server must
exit 0 on SIGTERM. Only 127.0.0.1 is used; wrap with ``scripts/loopback-only.sh`` as root.

Prints one JSON object on stdout. Usage: ``python bench/media_sessions.py --sessions 1 2 4``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import secrets
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import aiortc
import av
import psutil

from banking.identity import luhn_check_digit, prc_id_check_char

logger = logging.getLogger("bench.media_sessions")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SESSIONS_PER_CLIENT = 2
DEFAULT_PHOTO = "identity/face_recognition/obama/obama.jpg"
CLI_TIMEOUT = 120.0
START_TIMEOUT = 60.0
CONNECT_TIMEOUT = 120.0
STOP_TIMEOUT = 15.0
WARMUP_SECONDS = 3.0
SAMPLE_PERIOD = 0.5
SERVER_LABEL = "cloudbranch serve (real app: HTTP, WebSocket signaling, media)"


# ---- accounts ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Customer:
    """A customer enrolled for the benchmark, as they type themselves in."""

    name: str
    id_number: str
    card_number: str

    @property
    def card_last4(self) -> str:
        """What the identification form asks for."""
        return self.card_number[-4:]


@dataclass(frozen=True, slots=True)
class Advisor:
    """A staff account with the advisor role."""

    username: str
    display_name: str


def customer(index: int) -> Customer:
    """The ``index``-th benchmark customer: a valid PRC ID number and a Luhn card number."""
    if not 0 <= index < 1000:
        raise ValueError("at most 1000 benchmark customers")
    id_body = f"11010519800101{index:03d}"
    card_body = f"62220299{index:010d}"
    return Customer(
        name=f"Bench Customer {index + 1}",
        id_number=id_body + prc_id_check_char(id_body),
        card_number=card_body + luhn_check_digit(card_body),
    )


def advisor(index: int) -> Advisor:
    """The ``index``-th benchmark advisor."""
    return Advisor(username=f"bench-advisor-{index + 1}", display_name=f"Bench Advisor {index + 1}")


def pair_spec(index: int, password: str) -> dict[str, dict[str, str]]:
    """What a client process needs to play one customer and one advisor."""
    c, a = customer(index), advisor(index)
    return {
        "customer": {"name": c.name, "id_number": c.id_number, "card_last4": c.card_last4},
        "advisor": {"username": a.username, "password": password},
    }


# ---- the server -------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(data_dir: Path, shared_data: Path, max_calls: int) -> dict[str, str]:
    """The environment of the ``cloudbranch`` commands; none of the caller's settings leak in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDBRANCH_")}
    env.update(
        CLOUDBRANCH_DATA_DIR=str(data_dir),
        CLOUDBRANCH_HOST="127.0.0.1",
        CLOUDBRANCH_ICE_LOOPBACK_ONLY="1",
        CLOUDBRANCH_MAX_CALLS=str(max_calls),
        CLOUDBRANCH_IDENTIFY_ATTEMPTS="100000",
        CLOUDBRANCH_SHARED_DATA=str(shared_data),
        CLOUDBRANCH_DEFAULT_LANG="en",
        CLOUDBRANCH_LOG_LEVEL="INFO",
    )
    return env


@dataclass(frozen=True, slots=True)
class Setup:
    """The enrolled data folder and how to run the ``cloudbranch`` command on it."""

    cli: Path
    workdir: Path
    env: dict[str, str]
    password: str


async def cloudbranch(setup: Setup, *args: str, extra_env: dict[str, str] | None = None) -> None:
    """Run one ``cloudbranch`` command to completion (bounded); its output goes to the log."""
    log = setup.workdir / "cli.log"
    with log.open("ab") as fh:
        fh.write(f"$ cloudbranch {' '.join(args)}\n".encode())
        fh.flush()
        proc = await asyncio.create_subprocess_exec(
            str(setup.cli),
            *args,
            env={**setup.env, **(extra_env or {})},
            cwd=REPO,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=fh,
            stderr=fh,
        )
        try:
            code = await asyncio.wait_for(proc.wait(), CLI_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
    if code != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"`cloudbranch {' '.join(args[:2])}` exited with {code}:\n{tail}")


async def enrol(setup: Setup, count: int, photo: Path) -> None:
    """``count`` customers and advisors, through the command an operator uses."""
    await cloudbranch(setup, "migrate")
    for i in range(count):
        c, a = customer(i), advisor(i)
        await cloudbranch(
            setup,
            *("customers", "add", "--name", c.name, "--id-number", c.id_number),
            *("--card-number", c.card_number, "--photo", str(photo)),
        )
        await cloudbranch(
            setup,
            *("staff", "add", "--username", a.username, "--role", "advisor"),
            *("--display-name", a.display_name),
            extra_env={"CLOUDBRANCH_NEW_STAFF_PASSWORD": setup.password},
        )


@dataclass(slots=True)
class Server:
    """A running ``cloudbranch serve``."""

    proc: asyncio.subprocess.Process
    base_url: str
    log: Path

    def log_tail(self, chars: int = 4000) -> str:
        """The end of its log, to explain a failure."""
        return self.log.read_text(errors="replace")[-chars:]

    def log_errors(self) -> int:
        """Log lines at ERROR or worse, and tracebacks."""
        lines = self.log.read_text(errors="replace").splitlines()
        return sum(1 for ln in lines if " ERROR " in ln or " CRITICAL " in ln or "Traceback" in ln)


async def healthy(http: aiohttp.ClientSession, url: str) -> bool:
    """Whether ``GET /healthz`` answers 200."""
    try:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
            return resp.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def start_server(setup: Setup, label: str) -> Server:
    """``cloudbranch serve`` on a free loopback port, once it answers ``/healthz``."""
    port = free_port()
    log = setup.workdir / f"server-{label}.log"
    with log.open("ab") as fh:
        proc = await asyncio.create_subprocess_exec(
            str(setup.cli),
            "serve",
            env={**setup.env, "CLOUDBRANCH_PORT": str(port)},
            cwd=REPO,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=fh,
            stderr=fh,
        )
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + START_TIMEOUT
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise RuntimeError(
                    f"the server exited with {proc.returncode}:\n{server.log_tail()}"
                )
            if await healthy(http, server.base_url + "/healthz"):
                return server
            await asyncio.sleep(0.2)
    await kill(proc)
    raise RuntimeError(f"the server did not answer /healthz in {START_TIMEOUT} s")


async def kill(proc: asyncio.subprocess.Process) -> None:
    """Kill a child process (if it still runs) and reap it."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def stop_server(server: Server) -> int:
    """SIGTERM; the exit code (killed after ``STOP_TIMEOUT``, which is an error)."""
    if server.proc.returncode is not None:
        raise RuntimeError(f"the server died (code {server.proc.returncode}):\n{server.log_tail()}")
    server.proc.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(server.proc.wait(), STOP_TIMEOUT)
    except TimeoutError:
        await kill(server.proc)
        raise RuntimeError(f"the server ignored SIGTERM for {STOP_TIMEOUT} s") from None


# ---- client processes -------------------------------------------------------------------------


class Client:
    """A ``_media_clients.py`` process and its line protocol."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, spec: Path) -> Client:
        """Start one client process for the pairs in ``spec``."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(HERE / "_media_clients.py"),
            "--spec",
            str(spec),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def read(self, wait_seconds: float) -> dict[str, Any]:
        """The next JSON line it prints (bounded wait)."""
        if self.proc.stdout is None:
            raise RuntimeError("client started without a stdout pipe")
        line = await asyncio.wait_for(self.proc.stdout.readline(), wait_seconds)
        if not line:
            raise RuntimeError(f"client {self.proc.pid} exited with {await self.proc.wait()}")
        result: dict[str, Any] = json.loads(line)
        return result

    async def tell(self, word: str) -> None:
        """Send one command line."""
        if self.proc.stdin is None:
            raise RuntimeError("client started without a stdin pipe")
        self.proc.stdin.write(word.encode() + b"\n")
        await self.proc.stdin.drain()

    async def finish(self) -> int:
        """Wait for it to exit after ``hangup`` (bounded)."""
        return await asyncio.wait_for(self.proc.wait(), STOP_TIMEOUT)


async def start_clients(n: int, setup: Setup, base_url: str) -> list[Client]:
    """Client processes, ``SESSIONS_PER_CLIENT`` sessions each."""
    clients = []
    for first in range(0, n, SESSIONS_PER_CLIENT):
        indices = range(first, min(n, first + SESSIONS_PER_CLIENT))
        spec = setup.workdir / f"clients-{n}-{first}.json"
        pairs = [pair_spec(i, setup.password) for i in indices]
        spec.write_text(json.dumps({"base_url": base_url, "pairs": pairs}))
        spec.chmod(0o600)
        clients.append(await Client.start(spec))
    return clients


# ---- measuring --------------------------------------------------------------------------------


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all processes, all cores)."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def tree(proc: psutil.Process) -> Iterator[psutil.Process]:
    """A process and its living descendants."""
    yield proc
    with contextlib.suppress(psutil.Error):
        yield from proc.children(recursive=True)


def cpu_seconds(procs: list[psutil.Process], descendants: bool = True) -> float:
    """User + system CPU seconds of these processes (and, by default, their descendants)."""
    total = 0.0
    for root in procs:
        for proc in tree(root) if descendants else [root]:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
    return total


class RssSampler:
    """Samples a process's resident memory in the background (peak and last)."""

    def __init__(self, proc: psutil.Process) -> None:
        self._proc = proc
        self.peak = self.last = 0
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        with contextlib.suppress(psutil.Error):
            while True:
                self.sample()
                await asyncio.sleep(SAMPLE_PERIOD)

    def sample(self) -> None:
        """Take one sample now."""
        self.last = sum(p.memory_info().rss for p in tree(self._proc))
        self.peak = max(self.peak, self.last)

    async def close(self) -> None:
        """Stop sampling."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@dataclass(slots=True)
class Window:
    """CPU counters at one instant."""

    at: float
    server: float
    clients: float
    own: float  # this script alone (its descendants are the server and the clients)
    machine: float

    @classmethod
    def take(cls, server: psutil.Process, clients: list[psutil.Process]) -> Window:
        """Read every counter now."""
        return cls(
            at=time.monotonic(),
            server=cpu_seconds([server]),
            clients=cpu_seconds(clients),
            own=cpu_seconds([psutil.Process()], descendants=False),
            machine=machine_busy_seconds(),
        )


async def measure(n: int, seconds: float, setup: Setup, server: Server) -> dict[str, Any]:
    """Run N sessions against a started server: connect, measure one window, hang up."""
    server_proc = psutil.Process(server.proc.pid)
    rss = RssSampler(server_proc)
    clients = await start_clients(n, setup, server.base_url)
    try:
        await asyncio.gather(*(c.read(CONNECT_TIMEOUT) for c in clients))
        await asyncio.sleep(WARMUP_SECONDS)
        client_procs = [psutil.Process(c.proc.pid) for c in clients]
        await asyncio.gather(*(c.tell("go") for c in clients))
        before = Window.take(server_proc, client_procs)
        await asyncio.sleep(seconds)
        after = Window.take(server_proc, client_procs)
        await asyncio.gather(*(c.tell("stop") for c in clients))
        replies = await asyncio.gather(*(c.read(STOP_TIMEOUT) for c in clients))
        rss.sample()
        await asyncio.gather(*(c.tell("hangup") for c in clients))
        ends = await asyncio.gather(*(c.read(STOP_TIMEOUT) for c in clients))
        hung_up = sum(int(end["hung_up"]) for end in ends)
        codes = await asyncio.gather(*(c.finish() for c in clients))
        if hung_up != n or any(codes):
            raise RuntimeError(f"hang-up: {hung_up} of {n} calls ended, client exit codes {codes}")
    finally:
        await asyncio.gather(*(kill(c.proc) for c in clients))
        await rss.close()
    sessions = [s for r in replies for s in r["results"]]
    return summarise(n, before, after, sessions, rss)


def summarise(
    n: int, before: Window, after: Window, sessions: list[dict[str, float]], rss: RssSampler
) -> dict[str, Any]:
    """The JSON figures of one N."""
    elapsed = after.at - before.at
    server = after.server - before.server
    clients = after.clients - before.clients
    own = after.own - before.own
    others = after.machine - before.machine - server - clients - own

    def mean(key: str) -> float:
        return round(statistics.fmean(s[key] for s in sessions), 2)

    return {
        "sessions": n,
        "window_seconds": round(elapsed, 2),
        "server_cpu_seconds_per_session_second": round(server / elapsed / n, 3),
        "server_cpu_cores_total": round(server / elapsed, 3),
        "clients_cpu_cores_total": round(clients / elapsed, 3),
        "other_processes_cpu_cores": round(max(others, 0.0) / elapsed, 3),
        "customer_to_advisor_video_fps": mean("customer_to_advisor_video_fps"),
        "advisor_to_customer_video_fps": mean("advisor_to_customer_video_fps"),
        "customer_to_advisor_audio_fps": mean("customer_to_advisor_audio_fps"),
        "advisor_to_customer_audio_fps": mean("advisor_to_customer_audio_fps"),
        "per_session": sessions,
        "server_rss_mb": {"peak": round(rss.peak / 2**20, 1), "end": round(rss.last / 2**20, 1)},
    }


async def run_n(n: int, seconds: float, setup: Setup) -> dict[str, Any]:
    """Start a fresh server, run N sessions, hang up, SIGTERM it and require exit 0."""
    server = await start_server(setup, str(n))
    try:
        result = await measure(n, seconds, setup, server)
    except BaseException:
        print(f"---- server log (N={n}) ----\n{server.log_tail()}", file=sys.stderr)
        with contextlib.suppress(Exception):
            await stop_server(server)
        await kill(server.proc)
        raise
    code = await stop_server(server)
    if code != 0:
        raise RuntimeError(f"the server exited with {code} after SIGTERM:\n{server.log_tail()}")
    result["server_exit_code"] = code
    result["server_log_errors"] = server.log_errors()
    return result


async def run(
    sessions: list[int], seconds: float, cli: Path, shared: Path, photo: Path
) -> dict[str, Any]:
    """Enrol once, then every N in turn on a fresh server."""
    load = psutil.getloadavg()[0]
    most = max(sessions)
    with tempfile.TemporaryDirectory(prefix="cloudbranch-bench-") as tmp:
        workdir = Path(tmp)
        env = server_env(workdir / "data", shared, max_calls=most + 8)
        setup = Setup(cli, workdir, env, secrets.token_urlsafe(18))
        started = time.monotonic()
        await enrol(setup, most, photo)
        enrol_seconds = time.monotonic() - started
        results = [await run_n(n, seconds, setup) for n in sessions]
    return {
        "benchmark": "media_sessions",
        "server": SERVER_LABEL,
        "flow": (
            "per session: customer GET/POST /identify (consultation), GET/POST /consent, WS "
            "queue.join; advisor GET/POST /staff/login, WS presence.set available, queue.accept; "
            "both webrtc.offer/answer over WS on call.started; call.hangup at the end"
        ),
        "forwarding": "decode + re-encode per forwarded stream (aiortc VP8/Opus)",
        "client_video": "640x480 30 fps moving picture, pre-encoded 1 s VP8 loop (~1 Mbit/s)",
        "client_audio": "440 Hz tone, 48 kHz stereo, 20 ms frames",
        "clients": f"{SESSIONS_PER_CLIENT} sessions per client process, separate from the server",
        "server_cpu": "user + system of the server process, window starts once media flows",
        "other_processes_cpu_cores": (
            "per result: machine busy CPU minus server, clients and this script, in the window"
        ),
        "machine": {
            "cores_logical": psutil.cpu_count(logical=True),
            "cores_physical": psutil.cpu_count(logical=False),
            "loadavg_1m_at_start": round(load, 2),
        },
        "versions": {"aiortc": aiortc.__version__, "av": av.__version__},
        "enrolment_seconds": round(enrol_seconds, 1),
        "seconds": seconds,
        "results": results,
    }


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--cli",
        type=Path,
        default=Path(sys.executable).parent / "cloudbranch",
        help="the cloudbranch command (default: next to this Python)",
    )
    shared = Path(os.environ.get("CLOUDBRANCH_SHARED_DATA", REPO.parent / "shared" / "data"))
    parser.add_argument(
        "--photo", type=Path, help=f"a face photo to enrol (default: <shared data>/{DEFAULT_PHOTO})"
    )
    args = parser.parse_args()
    shared = shared.resolve()
    args.photo = args.photo or shared / DEFAULT_PHOTO
    if min(args.sessions) < 1 or args.seconds <= 0:
        parser.error("sessions must be ≥ 1 and seconds > 0")
    for path, what in ((args.cli, "the cloudbranch command"), (args.photo, "the face photo")):
        if not path.is_file():
            parser.error(f"{what} not found at {path}")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    most = max(args.sessions)
    budget = (
        2 * CLI_TIMEOUT
        + most * 10
        + sum(
            START_TIMEOUT + CONNECT_TIMEOUT + WARMUP_SECONDS + args.seconds + 4 * STOP_TIMEOUT
            for _ in args.sessions
        )
    )
    coro = run(args.sessions, args.seconds, args.cli, shared, args.photo.resolve())
    result = asyncio.run(asyncio.wait_for(coro, math.ceil(budget)))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
