"""The client side of ``bench/media_sessions.py``: customers and advisors, as browsers do it.

For every customer/advisor pair in the spec file, two independent HTTP clients (each its own
cookie jar, as two browsers) walk the real pages of ``cloudbranch serve``: the customer
identifies (``GET``/``POST /identify``), accepts the consent (``GET``/``POST /consent``), opens
``/ws`` and sends ``queue.join``; the advisor logs in (``GET``/``POST /staff/login``), opens
``/ws``, sets itself ``available`` and accepts its customer's case from ``queue.snapshot``. On
``call.started`` each side's aiortc peer sends ``webrtc.offer`` over its WebSocket and applies the
``webrtc.answer``, then sends a 640×480 30 fps moving picture and a 440 Hz tone. The video is a
one-second VP8 loop encoded once at start-up and then sent as packets, so that the clients' CPU
(on the same machine) is spent decoding what they receive, not encoding.

Protocol (one JSON object per line on stdout, one word per line on stdin): ``{"connected": n}``
once media flows both ways in every call; ``go`` starts counting received frames, ``stop`` ends
the window and prints ``{"results": […]}``; ``hangup`` sends ``call.hangup`` in every call,
waits for ``call.ended`` on both sides, prints ``{"hung_up": n}`` and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media.ice import enable_loopback_ice, keep_loopback_candidates, loopback_gathering

logger = logging.getLogger("bench.media_clients")

WIDTH, HEIGHT, FPS = 640, 480, 30
VIDEO_TIME_BASE = Fraction(1, 90_000)
AUDIO_RATE, AUDIO_SAMPLES = 48_000, 960


def moving_picture(index: int, phase: int) -> np.ndarray:
    """A 640×480 RGB frame: a gradient that scrolls and a box that moves (cheap numpy)."""
    x = (np.arange(WIDTH, dtype=np.uint16) + 8 * index + phase) % 256
    frame = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
    frame[:, :, 0] = x.astype(np.uint8)
    frame[:, :, 1] = (np.arange(HEIGHT, dtype=np.uint16)[:, None] * 255 // HEIGHT).astype(np.uint8)
    frame[:, :, 2] = 128
    left = (20 * index) % (WIDTH - 120)
    frame[180:300, left : left + 120] = (255, 255, 255)
    return frame


def encode_loop(phase: int) -> list[bytes]:
    """One second of VP8 (keyframe first) so that the loop can repeat seamlessly."""
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    codec.time_base = Fraction(1, FPS)
    codec.framerate = Fraction(FPS, 1)
    codec.bit_rate = 1_000_000
    codec.gop_size = FPS
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    packets: list[bytes] = []
    for index in range(FPS):
        frame = av.VideoFrame.from_ndarray(moving_picture(index, phase), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = index
        packets += [bytes(p) for p in codec.encode(frame)]
    packets += [bytes(p) for p in codec.encode(None)]
    return packets[:FPS]


class _Paced(MediaStreamTrack):
    """A track that hands out item ``n`` at ``start + n * period``."""

    def __init__(self, period: float) -> None:
        super().__init__()
        self._period = period
        self._start: float | None = None
        self._index = 0

    async def _tick(self) -> int:
        if self._start is None:
            self._start = time.monotonic()
        index = self._index
        self._index += 1
        delay = self._start + index * self._period - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        return index


class VideoLoopTrack(_Paced):
    """Sends pre-encoded VP8 packets at 30 fps (no encoding in the client)."""

    kind = "video"

    def __init__(self, packets: list[bytes]) -> None:
        super().__init__(1 / FPS)
        self._packets = packets

    async def recv(self) -> av.Packet[Any]:
        index = await self._tick()
        packet = av.Packet(self._packets[index % len(self._packets)])
        packet.pts, packet.time_base = index * 90_000 // FPS, VIDEO_TIME_BASE
        return packet


class ToneTrack(_Paced):
    """A 440 Hz stereo tone in 20 ms frames."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__(AUDIO_SAMPLES / AUDIO_RATE)
        t = np.arange(AUDIO_RATE) / AUDIO_RATE
        mono = (3000 * np.sin(2 * math.pi * 440 * t)).astype(np.int16)
        self._samples = np.repeat(mono, 2).reshape(1, -1)

    async def recv(self) -> av.AudioFrame:
        index = await self._tick()
        start = (index * AUDIO_SAMPLES) % AUDIO_RATE
        chunk = self._samples[:, 2 * start : 2 * (start + AUDIO_SAMPLES)]
        frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
        frame.sample_rate, frame.pts = AUDIO_RATE, index * AUDIO_SAMPLES
        frame.time_base = Fraction(1, AUDIO_RATE)
        return frame


CONNECT_TIMEOUT = 60.0
STEP_TIMEOUT = 20.0
SERVICE = "consultation"
_CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')

Message = dict[str, Any]


class FlowError(RuntimeError):
    """The server did not answer the way a browser expects."""


def csrf_of(html: str) -> str:
    """The CSRF token of a rendered form."""
    found = _CSRF_RE.search(html)
    if found is None:
        raise FlowError("the page has no CSRF field")
    return found.group(1)


def new_browser(base: str) -> aiohttp.ClientSession:
    """An HTTP client with its own cookie jar that, like a browser, keeps Secure cookies on a
    loopback origin (the server marks its session cookie Secure there)."""
    jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[base])
    return aiohttp.ClientSession(
        base_url=base, cookie_jar=jar, timeout=aiohttp.ClientTimeout(total=STEP_TIMEOUT)
    )


async def get_form(http: aiohttp.ClientSession, path: str) -> str:
    """GET a page with a form and return its CSRF token."""
    async with http.get(path) as page:
        if page.status != 200:
            raise FlowError(f"GET {path}: {page.status}")
        return csrf_of(await page.text())


async def post_form(
    http: aiohttp.ClientSession, path: str, data: dict[str, str], location: str
) -> None:
    """POST a form and check that it redirects (303) to ``location``."""
    async with http.post(path, data=data, allow_redirects=False) as resp:
        got = resp.headers.get("Location", "")
        if resp.status != 303 or got != location:
            text = (await resp.text())[:300]
            raise FlowError(
                f"POST {path}: {resp.status} to {got!r}, wanted 303 to {location}: {text}"
            )


async def get_page(http: aiohttp.ClientSession, path: str) -> None:
    """GET a page the browser would show next (it must render)."""
    async with http.get(path) as page:
        if page.status != 200:
            raise FlowError(f"GET {path}: {page.status}")
        await page.read()


async def customer_pages(http: aiohttp.ClientSession, customer: dict[str, str]) -> None:
    """Identify, accept the consent, open the device check and the call page."""
    token = await get_form(http, f"/identify?service={SERVICE}")
    form = {
        "csrf_token": token,
        "service": SERVICE,
        "name": customer["name"],
        "id_number": customer["id_number"],
        "card_last4": customer["card_last4"],
    }
    await post_form(http, "/identify", form, "/consent")
    token = await get_form(http, "/consent")
    await post_form(http, "/consent", {"csrf_token": token, "accept": "on"}, "/device-check")
    await get_page(http, "/device-check")
    await get_page(http, "/call")


async def advisor_pages(http: aiohttp.ClientSession, advisor: dict[str, str]) -> None:
    """Log in and open the advisor console."""
    token = await get_form(http, "/staff/login")
    form = {"csrf_token": token, "username": advisor["username"], "password": advisor["password"]}
    await post_form(http, "/staff/login", form, "/advisor")
    await get_page(http, "/advisor")


class Signal:
    """One page's WebSocket: a reader task queues the server's messages; an ``error`` message
    or a closed socket fails whoever is waiting."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, label: str) -> None:
        self.ws = ws
        self.label = label
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, http: aiohttp.ClientSession, base: str, label: str) -> Signal:
        """Open ``/ws`` with the page's cookies and Origin."""
        ws = await http.ws_connect("/ws", origin=base, autoping=True)
        return cls(ws, label)

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                if frame.type == aiohttp.WSMsgType.TEXT:
                    await self.inbox.put(json.loads(frame.data))
        finally:
            await self.inbox.put({"type": "_closed"})

    async def send(self, kind: str, **fields: str) -> None:
        """Send one client message (protocol version 1)."""
        await self.ws.send_json({"type": kind, "v": 1, **fields})

    async def expect(
        self,
        kind: str,
        when: Callable[[Message], bool] | None = None,
    ) -> Message:
        """The next message of this type (others are skipped, as a page ignores them)."""
        try:
            async with asyncio.timeout(STEP_TIMEOUT):
                while True:
                    msg = await self.inbox.get()
                    if msg["type"] in ("error", "_closed"):
                        raise FlowError(f"{self.label}: {msg} while waiting for {kind}")
                    if msg["type"] == kind and (when is None or when(msg)):
                        return msg
        except TimeoutError:
            raise FlowError(f"{self.label}: no {kind} within {STEP_TIMEOUT} s") from None

    async def close(self) -> None:
        """Close the socket and its reader."""
        await self.ws.close()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class Peer:
    """One browser's media: sends video and audio, counts what it receives."""

    def __init__(self, packets: list[bytes]) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTrack(ToneTrack())
        video = self.pc.addTransceiver(VideoLoopTrack(packets), direction="sendrecv")
        vp8 = [
            c
            for c in RTCRtpSender.getCapabilities("video").codecs
            if c.mimeType in ("video/VP8", "video/rtx")
        ]
        video.setCodecPreferences(vp8)
        self.counts = {"audio": 0, "video": 0}
        self.video_flowing = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", lambda track: self.tasks.append(asyncio.create_task(self._sink(track))))

    async def _sink(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                self.counts[track.kind] += 1
                if track.kind == "video":
                    self.video_flowing.set()

    async def negotiate(self, signal: Signal) -> None:
        """Send ``webrtc.offer`` (gathering complete, loopback candidates only, as the page does
        when ``ice_loopback_only``) and apply the ``webrtc.answer``."""
        offer = await self.pc.createOffer()
        with loopback_gathering():
            await self.pc.setLocalDescription(offer)
        await signal.send(
            "webrtc.offer", sdp=keep_loopback_candidates(self.pc.localDescription.sdp)
        )
        answer = await signal.expect("webrtc.answer")
        sdp = keep_loopback_candidates(answer["sdp"])
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def close(self) -> None:
        """Close the peer and its sinks."""
        await self.pc.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@dataclass
class Side:
    """One browser: its HTTP client, its WebSocket and its media."""

    http: aiohttp.ClientSession
    signal: Signal | None = None
    peer: Peer | None = None

    async def close(self) -> None:
        """Close media, socket and HTTP client (whatever was opened)."""
        if self.peer is not None:
            await self.peer.close()
        if self.signal is not None:
            await self.signal.close()
        await self.http.close()


@dataclass
class Session:
    """One customer↔advisor call."""

    customer: Side
    advisor: Side
    case_id: str = ""

    @property
    def sides(self) -> dict[str, Side]:
        """Both sides by role."""
        return {"customer": self.customer, "advisor": self.advisor}

    def peer(self, role: str) -> Peer:
        """A side's media peer (the call must be connected)."""
        peer = self.sides[role].peer
        if peer is None:
            raise FlowError(f"{role} has no media")
        return peer

    def signal(self, role: str) -> Signal:
        """A side's WebSocket (it must be open)."""
        signal = self.sides[role].signal
        if signal is None:
            raise FlowError(f"{role} has no WebSocket")
        return signal

    async def close(self) -> None:
        """Close both sides."""
        await asyncio.gather(self.customer.close(), self.advisor.close())


async def open_session(
    session: Session, base: str, pair: dict[str, dict[str, str]], loops: list[list[bytes]]
) -> None:
    """Queue the customer, have the advisor accept, negotiate both sides' media."""
    customer, advisor = session.customer, session.advisor
    await customer_pages(customer.http, pair["customer"])
    customer.signal = await Signal.open(customer.http, base, f"customer {pair['customer']['name']}")
    session.case_id = str((await customer.signal.expect("welcome"))["case_id"])
    await customer.signal.send("queue.join")
    await customer.signal.expect("queue.position")

    await advisor_pages(advisor.http, pair["advisor"])
    advisor.signal = await Signal.open(advisor.http, base, f"advisor {pair['advisor']['username']}")
    await advisor.signal.expect("welcome")
    await advisor.signal.send("presence.set", status="available")
    await advisor.signal.expect("presence.state", lambda m: m["status"] == "available")

    def waiting(msg: Message) -> bool:
        return any(entry["case_id"] == session.case_id for entry in msg["entries"])

    await advisor.signal.expect("queue.snapshot", waiting)
    await advisor.signal.send("queue.accept", case_id=session.case_id)
    await asyncio.gather(
        customer.signal.expect("call.started"), advisor.signal.expect("call.started")
    )
    customer.peer, advisor.peer = Peer(loops[0]), Peer(loops[1])
    await asyncio.gather(
        customer.peer.negotiate(customer.signal), advisor.peer.negotiate(advisor.signal)
    )


async def hang_up(session: Session) -> None:
    """The customer sends ``call.hangup``; both sides must be told ``call.ended``."""
    customer, advisor = session.signal("customer"), session.signal("advisor")
    await customer.send("call.hangup")
    await asyncio.gather(customer.expect("call.ended"), advisor.expect("call.ended"))


async def wait_flowing(sessions: list[Session]) -> None:
    """Wait until every peer receives video."""
    async with asyncio.timeout(CONNECT_TIMEOUT):
        await asyncio.gather(
            *(s.peer(role).video_flowing.wait() for s in sessions for role in s.sides)
        )


def snapshot(sessions: list[Session]) -> list[dict[str, dict[str, int]]]:
    """Received-frame counters of every peer."""
    return [{role: dict(s.peer(role).counts) for role in s.sides} for s in sessions]


def rates(
    before: list[dict[str, dict[str, int]]], after: list[dict[str, dict[str, int]]], seconds: float
) -> list[dict[str, float]]:
    """Frames per second per session and direction (measured at the receiving peer)."""

    def rate(i: int, side: str, kind: str) -> float:
        return round((after[i][side][kind] - before[i][side][kind]) / seconds, 2)

    return [
        {
            "customer_to_advisor_video_fps": rate(i, "advisor", "video"),
            "advisor_to_customer_video_fps": rate(i, "customer", "video"),
            "customer_to_advisor_audio_fps": rate(i, "advisor", "audio"),
            "advisor_to_customer_audio_fps": rate(i, "customer", "audio"),
        }
        for i in range(len(before))
    ]


async def command(expected: str) -> None:
    """Wait for the next command line on stdin."""
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if line.strip() != expected:
        raise FlowError(f"expected {expected!r} on stdin, got {line.strip()!r}")


def report(obj: dict[str, Any]) -> None:
    """One JSON line on stdout."""
    print(json.dumps(obj), flush=True)


async def run(spec: dict[str, Any]) -> None:
    """Connect every pair, report, then follow the commands on stdin."""
    enable_loopback_ice()
    loops = [encode_loop(0), encode_loop(128)]
    base = str(spec["base_url"])
    sessions: list[Session] = []
    try:
        for pair in spec["pairs"]:
            session = Session(Side(new_browser(base)), Side(new_browser(base)))
            sessions.append(session)
            await open_session(session, base, pair, loops)
        await wait_flowing(sessions)
        report({"connected": len(sessions)})
        await command("go")
        before, started = snapshot(sessions), time.monotonic()
        await command("stop")
        elapsed = time.monotonic() - started
        report({"results": rates(before, snapshot(sessions), elapsed), "seconds": elapsed})
        await command("hangup")
        await asyncio.gather(*(hang_up(s) for s in sessions))
        report({"hung_up": len(sessions)})
    finally:
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", type=Path, required=True, help="JSON: base_url and pairs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(run(json.loads(args.spec.read_text())))


if __name__ == "__main__":
    main()
