"""A throwaway PostgreSQL server for tests: initdb in a temporary folder, loopback only."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _bin(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None
    )
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (make apt-deps installs it)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(cmd: list[str]) -> list[str]:
    # initdb refuses to run as root; CI runs as root, with Debian's postgres user.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Start a private server; yields an asyncpg SQLAlchemy URL; stops and removes it after."""
    # Its own folder under /tmp: pytest's tmp folders are root-only, the server is not root.
    folder = Path(tempfile.mkdtemp(prefix="cloudbranch-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    data, port = folder / "data", _free_port()
    run = {"check": True, "capture_output": True, "timeout": 120}
    subprocess.run(
        _as_postgres([_bin("initdb"), "-D", str(data), "-U", "cb", "-A", "trust"]), **run
    )  # type: ignore[call-overload]
    options = f"-h 127.0.0.1 -p {port} -k {folder} -c fsync=off"
    pg_ctl = _bin("pg_ctl")
    subprocess.run(
        _as_postgres(
            [pg_ctl, "-D", str(data), "-o", options, "-w", "start", "-l", str(folder / "log")]
        ),
        **run,
    )  # type: ignore[call-overload]
    try:
        yield f"postgresql+asyncpg://cb@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]), **run)  # type: ignore[call-overload]
        shutil.rmtree(folder, ignore_errors=True)
