"""The auditor's case page in real Chromium against the real server process.

A closed case is seeded straight into the server's database and blob store (through the same
``cases`` code the server runs): two real VP8 WebM recordings — the customer's red, the
advisor's blue, the advisor's starting one second later on the common clock — and chat on the
timeline. The auditor searches, opens the case, presses play: both videos advance on one clock
and show their own party's colour, the advisor's only once its offset is reached; a timeline
entry seeks both; the verdict is saved and its state shown. axe-core checks both pages.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from playwright.async_api import Page, expect
from sqlalchemy import select

from cases.states import CaseState
from cases.store import CaseStore
from store.blobs import LocalBlobStore
from store.db import open_database
from store.models import Customer, Recording, Staff
from tests.e2e.conftest import STAFF_PASSWORD, Browsers, Server
from tests.e2e.test_accessibility import axe_problems, describe
from tests.web.test_audit_pages import make_webm
from web.settings import Settings

pytestmark = pytest.mark.e2e

RED, BLUE = (210, 40, 40), (40, 40, 210)
SECONDS = 4
ADVISOR_OFFSET_MS = 1000
CHAT_AT_S = 2.5  # the chat message is sent this long after the recordings' zero

# State of one <video>: what the test needs to tell that it plays and what it shows.
VIDEO_JS = """(sel) => {
  const v = document.querySelector(sel);
  const out = {t: v.currentTime, ready: v.readyState, w: v.videoWidth, paused: v.paused,
               idle: v.classList.contains("idle"), rgb: null};
  if (v.videoWidth > 0 && v.readyState >= 2) {
    const c = document.createElement("canvas");
    c.width = v.videoWidth; c.height = v.videoHeight;
    const ctx = c.getContext("2d");
    ctx.drawImage(v, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, Math.floor(c.height * 0.75)).data;  // above the bar
    const sum = [0, 0, 0];
    for (let i = 0; i < d.length; i += 4) {
      sum[0] += d[i]; sum[1] += d[i + 1]; sum[2] += d[i + 2];
    }
    const n = d.length / 4;
    out.rgb = sum.map((s) => s / n);
  }
  return out;
}"""


async def seed_case(server: Server) -> str:
    """A closed ukey_reset case with both recordings and a chat message; its public id."""
    settings = Settings.from_env({"CLOUDBRANCH_DATA_DIR": str(server.data_dir)})
    db = await open_database(settings.store)
    blobs = LocalBlobStore(settings.store.blob_dir)
    try:
        cases = CaseStore(db)
        name = server.customers["caller"].name
        async with db.session() as s:
            customer = (await s.scalars(select(Customer.id).where(Customer.name == name))).one()
            advisor = (await s.scalars(select(Staff.id).where(Staff.username == "advisor1"))).one()
        case = await cases.open(customer, "ukey_reset", "en", False)
        for state in (CaseState.CONSENTED, CaseState.QUEUED):
            await cases.move(case.public_id, state)
        zero = datetime.now(UTC)
        await cases.move(case.public_id, CaseState.IN_CALL, advisor_id=advisor)
        for side, colour, offset in (("customer", RED, 0), ("advisor", BLUE, ADVISOR_OFFSET_MS)):
            data = await asyncio.to_thread(make_webm, colour, SECONDS)
            key = await blobs.put(data)
            async with db.session() as s, s.begin():
                s.add(
                    Recording(
                        case_id=case.id,
                        side=side,
                        blob_key=key,
                        content_type="video/webm",
                        size=len(data),
                        duration_ms=SECONDS * 1000,
                        offset_ms=offset,
                        clock_zero=zero,
                        video_frames=SECONDS * 10,
                        audio_frames=0,
                        dropped_frames=0,
                        recovered=False,
                        stored_at=datetime.now(UTC),
                    )
                )
        await asyncio.sleep(CHAT_AT_S - (datetime.now(UTC) - zero).total_seconds())
        await cases.add_chat(case.id, "customer", "Here is my U-key.")
        await cases.move(case.public_id, CaseState.CLOSED, ended_by="advisor")
        return case.public_id
    finally:
        await db.close()


async def video(page: Page, side: str) -> dict[str, Any]:
    state: dict[str, Any] = await page.evaluate(VIDEO_JS, f"#video-{side}")
    return state


def is_colour(rgb: list[float] | None, colour: tuple[int, int, int]) -> bool:
    return rgb is not None and all(abs(a - b) < 40 for a, b in zip(rgb, colour, strict=True))


async def wait_video(page: Page, side: str, check: Any, what: str, timeout_s: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    state = await video(page, side)
    while not check(state):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{side} video: {what}; it is {state}")
        await asyncio.sleep(0.1)
        state = await video(page, side)


async def test_the_auditor_plays_both_recordings_in_sync_and_confirms(
    server: Server, browsers: Browsers
) -> None:
    base = server.base_url
    public_id = await seed_case(server)
    context = await browsers.launch(None, allow_media=False)
    page = await browsers.page(context, "auditor")
    found: dict[str, list[dict[str, Any]]] = {}

    await page.goto(base + "/staff/login?next=/audit")
    await page.fill("#login-username", "auditor1")
    await page.fill("#login-password", STAFF_PASSWORD)
    await page.click("#login-submit")
    await expect(page).to_have_url(re.compile(r"/audit$"))
    await page.select_option("#filter-service", "ukey_reset")
    await page.click("#filter-submit")
    await expect(page).to_have_url(re.compile(r"service=ukey_reset"))
    row = page.locator(f'.audit-row[data-case-id="{public_id}"]')
    await expect(row).to_be_visible()
    await expect(row.locator(".audit-state")).to_have_text("Not reviewed")
    if problems := await axe_problems(page):
        found["search"] = problems
    await row.locator(".audit-case-link").click()
    await expect(page).to_have_url(re.compile(rf"/audit/cases/{public_id}$"))

    # Both recordings load and really decode in Chromium.
    for side in ("customer", "advisor"):
        await expect(page.locator(f"#video-{side}")).to_have_attribute("preload", "metadata")
    await page.locator("#audit-play").click()
    await expect(page.locator("#audit-play")).to_have_attribute("aria-pressed", "true")
    # Before the advisor's offset only the customer plays; the advisor is "not yet speaking".
    await wait_video(page, "customer", lambda v: v["t"] > 0.2 and not v["paused"], "plays")
    early = await video(page, "advisor")
    if early["t"] == 0:
        assert early["idle"], f"the advisor's video before its offset: {early}"
        await expect(page.locator("#idle-advisor")).to_be_visible()
    await wait_video(page, "advisor", lambda v: v["t"] > 0.3 and not v["paused"], "plays")
    await expect(page.locator("#idle-advisor")).to_be_hidden()
    customer, advisor = await video(page, "customer"), await video(page, "advisor")
    for side, state in (("customer", customer), ("advisor", advisor)):
        assert state["ready"] >= 2 and state["w"] > 0, f"{side} does not decode: {state}"
    # One clock: the customer is ahead of the advisor by the advisor's offset.
    lag = customer["t"] - advisor["t"]
    assert abs(lag - ADVISOR_OFFSET_MS / 1000) < 0.4, f"customer {customer}, advisor {advisor}"
    assert is_colour(customer["rgb"], RED), f"the customer's video shows {customer['rgb']}"
    assert is_colour(advisor["rgb"], BLUE), f"the advisor's video shows {advisor['rgb']}"
    await expect(page.locator(".timeline-entry.current")).to_have_count(1)

    # Pause, then a timeline entry (the chat message, 2.5 s in) seeks both videos.
    await page.locator("#audit-play").click()
    await expect(page.locator("#audit-play")).to_have_attribute("aria-pressed", "false")
    entry = page.locator(".timeline-entry", has=page.locator('[data-action="chat.message"]'))
    t_ms = int(await entry.get_attribute("data-t-ms") or "-1")
    assert abs(t_ms - CHAT_AT_S * 1000) < 1000, f"chat message at {t_ms} ms on the clock"
    await entry.locator(".timeline-seek").click()
    want = t_ms / 1000
    await wait_video(page, "customer", lambda v: abs(v["t"] - want) < 0.15, f"at {want:.2f} s")
    back = want - ADVISOR_OFFSET_MS / 1000
    await wait_video(page, "advisor", lambda v: abs(v["t"] - back) < 0.15, f"at {back:.2f} s")
    scrubber = int(await page.locator("#audit-scrubber").input_value())
    assert abs(scrubber - t_ms) <= 100, f"scrubber at {scrubber}, entry at {t_ms}"  # step 100
    await expect(page.locator("#audit-clock")).to_have_text(re.compile(r"^00:0[23] / 00:05$"))
    await wait_video(page, "advisor", lambda v: is_colour(v["rgb"], BLUE), "shows blue")
    if problems := await axe_problems(page):
        found["case"] = problems

    # The verdict.
    await page.check("#verdict-flag")
    await page.click("#verdict-submit")
    await expect(page.locator("#verdict-error")).to_be_visible()  # a flag needs a comment
    await expect(page.locator("#verdict-comment")).to_be_focused()
    await page.check("#verdict-confirm")
    await page.click("#verdict-submit")
    await expect(page.locator("#review-state")).to_have_text("Confirmed")
    await expect(page.locator("#review-state")).to_have_attribute("data-state", "confirmed")
    await expect(page.locator("#verdict-status")).to_contain_text("Confirmed")
    await expect(page.locator("#verdict-form")).to_be_hidden()
    await page.reload()
    await expect(page.locator("#decide-blocked")).to_be_visible()
    await expect(page.locator(".verdict-row")).to_have_count(1)
    assert not found, "axe-core found serious or critical problems:" + describe(found)
