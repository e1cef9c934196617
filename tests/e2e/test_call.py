"""The customer's and the advisor's journey in real Chromium, against the real server process.

Each browser's fake camera plays a different real person (see ``clips.py``); what each side's
``#remote-video`` shows is compared with the *other* side's clip, so a black, frozen, swapped or
echoed video fails the test.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page, expect

from tests.e2e.clips import Clip, ColourStats, FaceFinder, Image, colour_stats, decode_data_url
from tests.e2e.conftest import STAFF_PASSWORD, Browsers, Customer, Server

pytestmark = pytest.mark.e2e

VIDEO_STATE_JS = """(sel) => {
  const v = document.querySelector(sel);
  if (!v) return null;
  return {w: v.videoWidth, h: v.videoHeight, t: v.currentTime, paused: v.paused,
          ready: v.readyState, hasStream: !!v.srcObject};
}"""

VIDEO_PLAYING_JS = """(sel) => {
  const v = document.querySelector(sel);
  return !!v && v.videoWidth > 0 && v.readyState >= 2 && !v.paused && v.currentTime > 0;
}"""

# Frames presented in one second (requestVideoFrameCallback), or -1 if none came in 3 s.
FRAMES_PER_SECOND_JS = """(sel) => new Promise((resolve) => {
  const v = document.querySelector(sel);
  let first = null;
  const t0 = performance.now();
  const onFrame = (now, meta) => {
    if (first === null) first = meta.presentedFrames;
    if (performance.now() - t0 >= 1000) resolve(meta.presentedFrames - first);
    else v.requestVideoFrameCallback(onFrame);
  };
  v.requestVideoFrameCallback(onFrame);
  setTimeout(() => resolve(-1), 3000);
})"""

# Peak level (RMS × 100) of the audio track playing in ``sel`` over ``ms``; null without audio.
AUDIO_PEAK_JS = """async ([sel, ms]) => {
  const v = document.querySelector(sel);
  const stream = v && v.srcObject;
  if (!stream || stream.getAudioTracks().length === 0) return null;
  const ctx = new AudioContext();
  await ctx.resume();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 1024;
  ctx.createMediaStreamSource(stream).connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  let peak = 0;
  const end = performance.now() + ms;
  while (performance.now() < end) {
    analyser.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const x of buf) sum += x * x;
    peak = Math.max(peak, Math.sqrt(sum / buf.length) * 100);
    await new Promise((r) => setTimeout(r, 20));
  }
  await ctx.close();
  return peak;
}"""

GRAB_JS = """(sel) => {
  const v = document.querySelector(sel);
  const c = document.createElement('canvas');
  c.width = v.videoWidth;
  c.height = v.videoHeight;
  c.getContext('2d').drawImage(v, 0, 0);
  return c.toDataURL('image/png');
}"""


# ---- steps ------------------------------------------------------------------------------------


async def staff_login(page: Page, base: str, username: str) -> None:
    """Log in on /staff/login and open the advisor console."""
    await page.goto(base + "/staff/login")
    await page.fill("#login-username", username)
    await page.fill("#login-password", STAFF_PASSWORD)
    await page.click("#login-submit")
    await expect(page.locator("#login-error")).to_have_count(0, timeout=5_000)
    if not page.url.startswith(base + "/advisor"):
        await page.goto(base + "/advisor")
    await expect(page.locator("#presence-toggle")).to_be_visible()


async def set_available(page: Page) -> None:
    """Make the advisor available: the console asks for it on connect; click if it did not."""
    toggle = page.locator("#presence-toggle")
    try:
        await expect(toggle).to_have_attribute("aria-pressed", "true", timeout=3_000)
    except AssertionError:
        await toggle.click()
        status = await page.locator("#presence-status").inner_text()
        await expect(toggle, f"presence: {status!r}").to_have_attribute(
            "aria-pressed", "true", timeout=5_000
        )


async def choose_service(page: Page, base: str) -> str:
    """Open the start page and choose the first service offered; return its code."""
    await page.goto(base + "/")
    radio = page.locator("input[name=service]").first
    await expect(radio).to_be_attached()
    code = await radio.get_attribute("value") or ""
    await radio.check()
    await page.click("#service-next")
    await expect(page).to_have_url(re.compile(r"/identify\b"))
    return code


async def identify(page: Page, name: str, id_number: str, card_last4: str) -> None:
    await page.fill("#id-name", name)
    await page.fill("#id-number", id_number)
    await page.fill("#id-card-last4", card_last4)
    await page.click("#identify-submit")


async def intake(page: Page, base: str, customer: Customer) -> None:
    """Service → identification → consent; ends on /device-check."""
    await choose_service(page, base)
    await identify(page, customer.name, customer.id_number, customer.card_last4)
    await expect(page, "identification with the enrolled data").to_have_url(
        re.compile(r"/consent\b")
    )
    await page.check("#consent-accept")
    await page.click("#consent-submit")
    await expect(page).to_have_url(re.compile(r"/device-check\b"))


async def video_state(page: Page, sel: str) -> Any:
    return await page.evaluate(VIDEO_STATE_JS, sel)


async def wait_playing(page: Page, sel: str, who: str, timeout_ms: int = 20_000) -> None:
    """``sel`` shows live video: it has a size, plays, and keeps presenting new frames."""
    try:
        await page.wait_for_function(VIDEO_PLAYING_JS, arg=sel, timeout=timeout_ms)
    except PlaywrightError as err:
        state = await video_state(page, sel)
        raise AssertionError(f"{who}: {sel} is not playing after {timeout_ms} ms: {state}") from err
    fps = await page.evaluate(FRAMES_PER_SECOND_JS, sel)
    assert fps >= 5, f"{who}: {sel} presented {fps} frames in 1 s (frozen?)"


async def grab_frames(page: Page, sel: str, count: int = 5, gap_s: float = 0.3) -> list[Image]:
    frames = []
    for _ in range(count):
        frames.append(await asyncio.to_thread(decode_data_url, await page.evaluate(GRAB_JS, sel)))
        await asyncio.sleep(gap_s)
    return frames


@dataclass(frozen=True, slots=True)
class Seen:
    """What one side's remote video showed, against the two clips."""

    who: str
    stats: ColourStats
    to_expected: float
    to_other: float
    hue_to_expected: float
    hue_to_other: float
    faces: list[int]
    motion: float

    def explain(self) -> str:
        rgb = ", ".join(f"{x:.0f}" for x in self.stats.mean_rgb)
        return (
            f"{self.who}: mean RGB ({rgb}); RGB distance to the expected clip "
            f"{self.to_expected:.1f}, to the other clip {self.to_other:.1f}; hue distance "
            f"{self.hue_to_expected:.2f} vs {self.hue_to_other:.2f}; faces per frame "
            f"{self.faces}; motion {self.motion:.2f}"
        )


def compare(who: str, frames: list[Image], expected: Clip, other: Clip, faces: FaceFinder) -> Seen:
    stats = colour_stats(frames)
    grey = [f.mean(axis=2) for f in frames]
    motion = max(float(np.abs(a - b).mean()) for a, b in itertools.pairwise(grey))
    return Seen(
        who=who,
        stats=stats,
        to_expected=stats.rgb_distance(expected.stats),
        to_other=stats.rgb_distance(other.stats),
        hue_to_expected=stats.hue_distance(expected.stats),
        hue_to_other=stats.hue_distance(other.stats),
        faces=[faces.count(f) for f in frames],
        motion=motion,
    )


def assert_shows(seen: Seen) -> None:
    """The remote video shows the expected person, not the viewer's own camera nor a blank."""
    assert seen.to_expected < 25, "colours far from the expected clip — " + seen.explain()
    assert seen.to_other > 2 * seen.to_expected, "closer to the wrong clip — " + seen.explain()
    assert seen.hue_to_expected < seen.hue_to_other, "hues match the wrong clip — " + seen.explain()
    assert any(n == 1 for n in seen.faces), "no face in the remote video — " + seen.explain()
    assert seen.motion > 0.3, "the remote video does not move — " + seen.explain()


# ---- tests ------------------------------------------------------------------------------------


async def test_customer_and_advisor_see_hear_and_chat_then_hang_up(
    server: Server, browsers: Browsers, clips: dict[str, Clip], face_finder: FaceFinder
) -> None:
    base, customer = server.base_url, server.customers["caller"]
    for clip in clips.values():  # the face assertion below is only meaningful if this holds
        assert clip.face_fraction >= 0.9, f"no face found in the clip {clip.source} itself"

    advisor = await browsers.page(await browsers.launch(clips["advisor"].y4m), "advisor")
    cust = await browsers.page(await browsers.launch(clips["customer"].y4m), "customer")

    await staff_login(advisor, base, "advisor1")
    await set_available(advisor)

    await intake(cust, base, customer)
    await wait_playing(cust, "#preview", "customer device check", timeout_ms=10_000)
    await expect(cust.locator("#device-continue")).to_be_enabled(timeout=10_000)
    await cust.click("#device-continue")
    await expect(cust).to_have_url(re.compile(r"/call\b"))
    await expect(cust.locator("#queue-position")).to_be_visible()
    # Alone in the queue: "You are next in line." (the browsers run in English, see conftest).
    await expect(cust.locator("#queue-position")).to_have_text(
        re.compile(r"\bnext\b|\b1\b", re.I), timeout=10_000
    )

    entry = advisor.locator("#queue-list .queue-entry", has_text=customer.name)
    await expect(entry, "the waiting customer in the advisor's queue").to_be_visible(timeout=15_000)
    await entry.locator(".accept-btn").click()

    for page in (advisor, cust):
        await expect(page.locator("#call-panel")).to_be_visible(timeout=10_000)
    await expect(advisor.locator("#peer-name")).to_contain_text(customer.name)
    await expect(cust.locator("#peer-name")).not_to_be_empty()

    await asyncio.gather(
        wait_playing(advisor, "#remote-video", "advisor"),
        wait_playing(cust, "#remote-video", "customer"),
    )
    advisor_frames, customer_frames = await asyncio.gather(
        grab_frames(advisor, "#remote-video"), grab_frames(cust, "#remote-video")
    )
    # Face detection and statistics take a while: off the event loop (tests/conftest.py checks).
    seen_by_advisor = await asyncio.to_thread(
        compare, "advisor sees", advisor_frames, clips["customer"], clips["advisor"], face_finder
    )
    seen_by_customer = await asyncio.to_thread(
        compare, "customer sees", customer_frames, clips["advisor"], clips["customer"], face_finder
    )
    print(seen_by_advisor.explain(), seen_by_customer.explain(), sep="\n")
    # Chromium's fake microphone beeps: each side must hear the other's beeps.
    heard = await asyncio.gather(
        advisor.evaluate(AUDIO_PEAK_JS, ["#remote-video", 2500]),
        cust.evaluate(AUDIO_PEAK_JS, ["#remote-video", 2500]),
    )
    print(f"remote audio peaks (RMS x 100): advisor {heard[0]}, customer {heard[1]}")
    assert_shows(seen_by_advisor)
    assert_shows(seen_by_customer)
    for who, peak in zip(("advisor", "customer"), heard, strict=True):
        assert peak is not None, f"{who}: the remote stream has no audio track"
        assert peak > 1, f"{who}: the remote audio is silent (peak RMS x 100 = {peak:.2f})"

    hello = f"Hello from the customer {uuid.uuid4().hex[:8]}"
    await cust.fill("#chat-input", hello)
    await cust.click("#chat-send")
    await expect(advisor.locator("#chat-log")).to_contain_text(hello, timeout=5_000)
    await expect(cust.locator("#chat-log")).to_contain_text(hello, timeout=5_000)
    await expect(cust.locator("#chat-input")).to_have_value("")

    reply = f"Good morning, how can I help? {uuid.uuid4().hex[:8]}"
    await advisor.fill("#chat-input", reply)
    await advisor.click("#chat-send")
    await expect(cust.locator("#chat-log")).to_contain_text(reply, timeout=5_000)
    await expect(advisor.locator("#chat-log")).to_contain_text(reply, timeout=5_000)

    await advisor.click("#hangup")
    for page in (advisor, cust):
        await expect(page.locator("#ended-panel")).to_be_visible(timeout=5_000)
    await expect(cust.locator("#call-panel")).to_be_hidden()


async def test_customer_who_refuses_the_camera_is_told_and_can_retry(
    server: Server, browsers: Browsers, clips: dict[str, Clip]
) -> None:
    context = await browsers.launch(clips["customer"].y4m, allow_media=False)
    page = await browsers.page(context, "customer")
    await intake(page, server.base_url, server.customers["no_camera"])

    messages = await page.evaluate(
        "() => JSON.parse(document.getElementById('cb-config').textContent).messages"
    )
    refused = messages.get("js.media.not_allowed")
    assert refused, "the page catalogue has no message for a refused camera"
    await expect(page.locator("#device-status"), "the customer is told").to_have_text(
        refused, timeout=10_000
    )
    await expect(page.locator("#device-retry")).to_be_visible()
    await expect(page.locator("#device-continue")).to_be_disabled()
    state = await video_state(page, "#preview")
    assert state is None or state["w"] == 0, f"a preview plays without permission: {state}"


async def test_wrong_identification_gets_one_generic_error(
    server: Server, browsers: Browsers
) -> None:
    page = await browsers.page(await browsers.launch(None), "customer")
    customer = server.customers["wrong_id"]
    await choose_service(page, server.base_url)
    wrong_digit = str((int(customer.card_last4[-1]) + 1) % 10)
    attempts = {
        "wrong name": (customer.name + "x", customer.card_last4),
        "wrong card digit": (customer.name, customer.card_last4[:3] + wrong_digit),
    }
    texts = {}
    for what, (name, last4) in attempts.items():
        async with page.expect_response(
            lambda r: r.request.method == "POST" and "/identify" in r.url
        ) as posted:
            await identify(page, name, customer.id_number, last4)
        response = await posted.value
        assert response.status == 400, f"{what}: POST /identify answered {response.status}"
        error = page.locator("#identify-error")
        await expect(error, what).to_be_visible()
        await expect(error).to_have_attribute("role", "alert")
        texts[what] = (await error.inner_text()).strip()
        assert texts[what], f"{what}: empty #identify-error"
        await expect(page.locator("#id-number"), "the ID number is never echoed").to_have_value("")
    assert len(set(texts.values())) == 1, f"the error tells which field was wrong: {texts}"
