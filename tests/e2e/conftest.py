"""Fixtures of the browser tests: real test clips, a real server process, real Chromium.

The server is started once per session exactly as an operator would (``cloudbranch seed-demo``,
``cloudbranch customers add``, ``cloudbranch serve``) with loopback-only ICE, and must stop
cleanly on SIGTERM. Each test launches its own Chromium processes: the fake camera file is a
per-process flag, so customer and advisor are two browsers showing two different people.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, Playwright, async_playwright

from tests.e2e.clips import Clip, FaceFinder, convert_clip

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CUSTOMER_CLIP = "liveness_video/grid/bbaf2n.mpg"  # a man in front of a blue-green wall
ADVISOR_CLIP = "liveness_video/liveportrait/d9.mp4"  # another man, warm indoor light
# The identity check's customer: a 3.1 s clip (played in a loop by the fake camera) with two
# blinks and a smile in every loop and no head turn, nod or open mouth (tests/verification).
VERIFY_CLIP = "liveness_video/liveportrait/d0.mp4"
# The challenge vocabulary, restricted to what VERIFY_CLIP contains (a "test setting", issue 3).
VERIFY_VOCABULARY = "blink,smile"
YUNET = "face_detect_yunet/face_detection_yunet_2023mar.onnx"
STAFF_PASSWORD = "demo-password-1"

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
    "--no-proxy-server",
]

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def id_number(first17: str) -> str:
    """A resident ID number: 17 digits plus the ISO 7064 MOD 11-2 check character."""
    total = sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True))
    return first17 + "10X98765432"[total % 11]


def card_number(body: str) -> str:
    """A card number: the digits plus their Luhn check digit."""
    total = 0
    for i, c in enumerate(reversed(body)):
        d = int(c) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


@dataclass(frozen=True, slots=True)
class Customer:
    """A customer the fixture enrolled through the CLI."""

    name: str
    id_number: str
    card_number: str
    photo: Path
    phone: str | None = None

    @property
    def card_last4(self) -> str:
        return self.card_number[-4:]


@dataclass(frozen=True, slots=True)
class Server:
    """The running server under test."""

    base_url: str
    log: Path
    data_dir: Path
    customers: dict[str, Customer]

    def log_tail(self, start: int = 0) -> str:
        with self.log.open("rb") as fh:
            fh.seek(start)
            return fh.read().decode(errors="replace")[-20_000:]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    rep = getattr(request.node, "rep_call", None)
    return rep is None or rep.failed


# ---- data -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real test data (never part of the repository)."""
    path = Path(os.environ.get("CLOUDBRANCH_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not (path / "liveness_video").is_dir():
        pytest.fail(f"shared test data not found at {path} (set CLOUDBRANCH_SHARED_DATA)")
    return path.resolve()


@pytest.fixture(scope="session")
def shared_models() -> Path:
    """The shared model files (YuNet for the face checks)."""
    path = Path(os.environ.get("CLOUDBRANCH_SHARED_MODELS", REPO.parent / "shared" / "models"))
    if not (path / YUNET).is_file():
        pytest.fail(f"YuNet model not found under {path} (set CLOUDBRANCH_SHARED_MODELS)")
    return path.resolve()


@pytest.fixture(scope="session")
def face_finder(shared_models: Path) -> FaceFinder:
    """OpenCV 5 ships no Haar cascades; YuNet (cv2.FaceDetectorYN) is the detector here."""
    return FaceFinder(shared_models / YUNET)


@pytest.fixture(scope="session")
def clips(
    shared_data: Path, face_finder: FaceFinder, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Clip]:
    """The people as fake-camera y4m files: ``customer`` and ``advisor`` (the call tests),
    ``verifier`` (the customer whose identity is checked)."""
    out = tmp_path_factory.mktemp("e2e-media")
    return {
        "customer": convert_clip("customer", shared_data / CUSTOMER_CLIP, out, face_finder),
        "advisor": convert_clip("advisor", shared_data / ADVISOR_CLIP, out, face_finder),
        "verifier": convert_clip("verifier", shared_data / VERIFY_CLIP, out, face_finder),
    }


# ---- server -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_env(data_dir: Path, port: int, shared_data: Path) -> dict[str, str]:
    # A developer's own CLOUDBRANCH_* (a Postgres URL, say) must not leak into the test server.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDBRANCH_")}
    if "CLOUDBRANCH_SHARED_MODELS" in os.environ:
        env["CLOUDBRANCH_SHARED_MODELS"] = os.environ["CLOUDBRANCH_SHARED_MODELS"]
    env.update(
        CLOUDBRANCH_DATA_DIR=str(data_dir),
        CLOUDBRANCH_HOST="127.0.0.1",
        CLOUDBRANCH_PORT=str(port),
        CLOUDBRANCH_ICE_LOOPBACK_ONLY="1",
        CLOUDBRANCH_SHARED_DATA=str(shared_data),
        CLOUDBRANCH_LOG_LEVEL="INFO",
        # Identity verification on, one face worker, challenges the verifier's clip can answer.
        CLOUDBRANCH_FACE_WORKERS="1",
        CLOUDBRANCH_VERIFY_FPS="10",
        CLOUDBRANCH_VERIFY_VOCABULARY=VERIFY_VOCABULARY,
        # The fake camera loops a clip: it cannot turn its head on cue, so its plans are
        # blinks and smiles, which only a test may allow (a replay meets them).
        CLOUDBRANCH_VERIFY_REPLAYABLE_PLANS="1",
        # The same test customers open a case in test after test.
        CLOUDBRANCH_CASES_PER_CUSTOMER_HOUR="1000",
    )
    return env


def _run_cli(cli: Path, args: list[str], env: dict[str, str], log: Path) -> None:
    with log.open("ab") as fh:
        fh.write(f"$ cloudbranch {' '.join(args)}\n".encode())
        fh.flush()
        proc = subprocess.run(
            [str(cli), *args], env=env, cwd=REPO, stdout=fh, stderr=fh, timeout=120, check=False
        )
    if proc.returncode != 0:
        pytest.fail(
            f"`cloudbranch {args[0]} {args[1] if len(args) > 1 else ''}` exited with "
            f"{proc.returncode}:\n{log.read_text(errors='replace')[-5000:]}"
        )


def _healthy(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _wait_healthy(proc: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"`cloudbranch serve` exited with {proc.returncode} before answering /healthz:\n"
                + log.read_text(errors="replace")[-8000:]
            )
        if _healthy(base_url + "/healthz"):
            return
        time.sleep(0.2)
    proc.kill()
    proc.wait(5)
    pytest.fail("GET /healthz did not answer 200 within 30 s:\n" + log.read_text()[-8000:])


def _customers(shared_data: Path, clips: dict[str, Clip]) -> dict[str, Customer]:
    photos = shared_data / "identity" / "face_recognition"
    return {
        # The caller's enrolled photo is a frame of the clip their fake camera plays.
        "caller": Customer(
            "E2E Tester",
            id_number("11010519491231002"),
            card_number("622202020011223344"),
            clips["customer"].still,
        ),
        "no_camera": Customer(
            "E2E Camera",
            id_number("11010519800101001"),
            card_number("622202020055667788"),
            photos / "biden" / "biden.jpg",
        ),
        # A second customer for pages walked at the same time (one customer holds one case:
        # identifying again in another browser ends the first one's).
        "no_camera_2": Customer(
            "E2E Camera Two",
            id_number("11010519800101028"),
            card_number("622202020055667799"),
            photos / "biden" / "biden.jpg",
        ),
        # Identity check: the photo on file is a frame of the clip the fake camera plays.
        "verifier": Customer(
            "E2E Verified",
            id_number("11010519520708004"),
            card_number("622202020033445566"),
            clips["verifier"].still,
        ),
        "wrong_id": Customer(
            "E2E Mistyped",
            id_number("11010519750615003"),
            card_number("622202020099001122"),
            photos / "obama" / "obama.jpg",
        ),
        # The services (test_services.py): one customer each, so that one service's changes
        # (a blocked card, a new PIN) and failed checks never meet another test. All of them are
        # the person of the verification clip, so a real identity check can pass.
        **{
            f"svc_{service}": Customer(
                f"E2E {service.replace('_', ' ').title()}",
                id_number(f"310104{19580310 + n}00{n}"),
                card_number(f"6222020200445566{n}{n}"),
                clips["verifier"].still,
                phone=f"1380013{n}00{n}",
            )
            for n, service in enumerate(
                ("pin_change", "card_loss", "phone_change", "ukey_reset"), 1
            )
        },
    }


@pytest.fixture(scope="session")
def server(
    shared_data: Path, clips: dict[str, Clip], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """``cloudbranch serve`` on a free loopback port with demo staff and the enrolled customers.

    Teardown sends SIGTERM and requires a clean exit (code 0) within 10 s.
    """
    yield from launch_server(shared_data, clips, tmp_path_factory)


def launch_server(
    shared_data: Path,
    clips: dict[str, Clip],
    tmp_path_factory: pytest.TempPathFactory,
    **settings: str,
) -> Iterator[Server]:
    """Seed and serve (see :func:`server`); ``settings`` are extra ``CLOUDBRANCH_*`` values."""
    cli = Path(sys.executable).parent / "cloudbranch"
    if not cli.exists():
        pytest.fail(f"{cli} not found: install the project into the venv (make deps)")
    data_dir = tmp_path_factory.mktemp("e2e-server")
    log = data_dir / "server.log"
    port = _free_port()
    env = {**_server_env(data_dir / "data", port, shared_data), **settings}
    customers = _customers(shared_data, clips)
    _run_cli(cli, ["seed-demo"], env, log)
    for c in customers.values():
        _run_cli(
            cli,
            [
                *("customers", "add", "--name", c.name, "--id-number", c.id_number),
                *("--card-number", c.card_number, "--photo", str(c.photo)),
                *(("--phone", c.phone) if c.phone else ()),
            ],
            env,
            log,
        )
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            [str(cli), "serve"], env=env, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT
        )
    base_url = f"http://127.0.0.1:{port}"
    _wait_healthy(proc, base_url, log)
    try:
        yield Server(base_url, log, data_dir / "data", customers)
    finally:
        _stop(proc, log)


def _stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    if proc.poll() is not None:
        pytest.fail(f"the server died during the tests (code {proc.returncode}):\n{_tail(log)}")
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        pytest.fail(f"the server did not exit within 10 s of SIGTERM:\n{_tail(log)}")
    if code != 0:
        pytest.fail(f"the server exited with code {code} after SIGTERM:\n{_tail(log)}")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-8000:]


# ---- browsers ---------------------------------------------------------------------------------


@dataclass
class Browsers:
    """Launches Chromium processes for one test and keeps what is needed to explain a failure."""

    playwright: Playwright
    out_dir: Path
    browsers: list[Browser] = field(default_factory=list)
    pages: dict[str, Page] = field(default_factory=dict)
    logs: list[str] = field(default_factory=list)

    async def launch(self, camera: Path | None, *, allow_media: bool = True) -> BrowserContext:
        """A fresh Chromium whose fake camera plays ``camera``; without ``allow_media`` the
        camera/microphone permission is refused (no fake-UI auto-accept, nothing granted)."""
        args = list(CHROMIUM_ARGS)
        if allow_media:
            args.append("--use-fake-ui-for-media-stream")
        if camera is not None:
            args.append(f"--use-file-for-fake-video-capture={camera}")
        browser = await self.playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=args
        )
        self.browsers.append(browser)
        context = await browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
        if allow_media:
            await context.grant_permissions(["camera", "microphone"])
        else:
            await context.clear_permissions()
        context.set_default_timeout(10_000)
        return context

    async def page(self, context: BrowserContext, label: str) -> Page:
        """A new page whose console, errors and WebSocket frames are logged under ``label``."""
        page = await context.new_page()
        self.pages[label] = page
        page.on("console", lambda m: self.logs.append(f"[{label}] console.{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.logs.append(f"[{label}] pageerror: {e}"))
        page.on("websocket", lambda ws: self._watch_ws(label, ws))
        return page

    def _watch_ws(self, label: str, ws: Any) -> None:
        def note(direction: str) -> Any:
            return lambda payload: self.logs.append(f"[{label}] ws {direction} {payload!s:.300}")

        ws.on("framesent", note("->"))
        ws.on("framereceived", note("<-"))

    async def report(self) -> None:
        """Screenshots and logs, printed into the failed test's output."""
        for label, page in self.pages.items():
            shot = self.out_dir / f"{label}.png"
            try:
                await page.screenshot(path=str(shot), full_page=True, timeout=5_000)
                print(f"screenshot of {label} ({page.url}): {shot}")
            except Exception as err:  # the page may be gone: still print everything else
                print(f"no screenshot of {label}: {err}")
        print("---- browser logs ----")
        print("\n".join(self.logs[-400:]))

    async def close(self) -> None:
        for browser in self.browsers:
            await browser.close()


@pytest.fixture
async def browsers(
    server: Server, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Browsers]:
    """Chromium launcher for one test; on failure: screenshots, browser logs, server log."""
    if not os.path.exists(CHROMIUM):  # noqa: ASYNC240 (a stat, before any await)
        pytest.fail(f"{CHROMIUM} not found (make apt-deps)")
    log_start = server.log.stat().st_size
    async with async_playwright() as pw:
        b = Browsers(pw, tmp_path)
        try:
            yield b
        finally:
            if _failed(request):
                await b.report()
                print("---- server log (this test) ----")
                print(server.log_tail(log_start))
            await b.close()
