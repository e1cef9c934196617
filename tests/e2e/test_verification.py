"""Identity verification inside a call, in real Chromium against the real server process.

The customer's fake camera plays a real clip (``VERIFY_CLIP`` in conftest: a person who blinks and
smiles, in a loop) and the photo on file is a frame of that clip, so the face match is genuine.
The server's challenge vocabulary is restricted to what the clip contains
(``CLOUDBRANCH_VERIFY_VOCABULARY``). The advisor starts an attempt; both pages must show the
instructions and the progress, then a decision; only the advisor gets the scores, the reasons and
the images — checked in the customer's DOM *and* in every WebSocket frame their browser received.

The customer of the clip grins from 0.7 s to 2.7 s of every 3.1 s loop. Actions are measured
against the neutral baseline taken in the first half second of the attempt, and a real customer
holds still when told "look at the camera"; the clip cannot listen, so the advisor clicks "start"
when the loop is about to reach its neutral stretch: the test finds where the fake camera is in
the loop by matching the customer's own ``#local-video`` against the clip's frames. Started at a
random moment, an attempt whose baseline falls on the grin cannot see a smile (measured with the
real engine on the clip's frames: about 60 % of start phases), which is the detector working as
designed, not something this test is about.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import av
import cv2
import numpy as np
import pytest
from numpy.typing import NDArray
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page, expect

from tests.e2e.clips import Clip
from tests.e2e.conftest import VERIFY_VOCABULARY, Browsers, Server
from tests.e2e.test_call import intake, set_available, staff_login, wait_playing

pytestmark = pytest.mark.e2e

DECISIONS = ("pass", "fail", "refer")
# Baseline (≤ 6 s) + three challenges (≤ 8 s each) + the decision (≤ 5 s), and some slack.
DECISION_TIMEOUT_MS = 45_000

# Records what the verification panel shows, at every change (instruction, steps, progress).
RECORD_JS = """() => {
  const log = (window.__verifyLog = []);
  const panel = document.getElementById("verify-panel");
  const snap = () => {
    const last = log[log.length - 1];
    const now = {
      instruction: document.getElementById("verify-instruction").textContent,
      guidance: document.getElementById("verify-guidance").textContent,
      progress: Number(document.getElementById("verify-progress").value),
      done: panel.querySelectorAll("#verify-steps li.done").length,
      current: [...panel.querySelectorAll("#verify-steps li")].findIndex(
        (li) => li.classList.contains("current")),
      outcome: document.getElementById("verify-outcome").dataset.outcome || null,
    };
    if (!last || JSON.stringify({...last, t: 0}) !== JSON.stringify({...now, t: 0})) {
      log.push({t: Math.round(performance.now()), ...now});
    }
  };
  new MutationObserver(snap).observe(panel, {
    subtree: true, childList: true, characterData: true, attributes: true,
  });
  snap();
}"""

IMAGE_LOADED_JS = """(sel) => {
  const img = document.querySelector(sel);
  return !!img && !img.hidden && img.complete && img.naturalWidth > 0;
}"""


# Grey 64×48 thumbnail of what ``sel`` shows now, with the page's clock.
THUMB_W, THUMB_H = 64, 48
THUMB_JS = """(sel) => {
  const v = document.querySelector(sel);
  const c = document.createElement("canvas");
  c.width = 64;
  c.height = 48;
  const g = c.getContext("2d", {willReadFrequently: true});
  g.imageSmoothingQuality = "high";
  g.drawImage(v, 0, 0, 64, 48);
  const d = g.getImageData(0, 0, 64, 48).data;
  const grey = [];
  for (let i = 0; i < d.length; i += 4) {
    grey.push(d[i] * 0.299 + d[i + 1] * 0.587 + d[i + 2] * 0.114);
  }
  return {t: performance.now() / 1000, grey};
}"""
# Where in the loop (seconds) the attempt's baseline should begin: the clip's neutral stretch runs
# from 2.7 s to 0.7 s of the next loop; a start between about 2.4 s and 3.6 s (= 0.5 s) gives a
# neutral baseline (measured by replaying the clip's frames through the attempt state machine).
BASELINE_AT = 2.9
START_LATENCY = 0.25  # click → attempt started → the server's first tapped frame (loopback)

Thumbs = NDArray[np.float32]


def normalised(grey: Thumbs) -> Thumbs:
    """Zero mean, unit spread per thumbnail: the y4m's limited-range luma and the browser's
    RGB-derived grey then compare directly."""
    axes = (-2, -1)
    centred = grey - grey.mean(axis=axes, keepdims=True)
    out: Thumbs = centred / (centred.std(axis=axes, keepdims=True) + 1e-6)
    return out


def clip_thumbs(clip: Clip) -> Thumbs:
    """Grey thumbnails of every frame of the clip's y4m file (what the fake camera plays)."""
    with av.open(str(clip.y4m)) as container:
        frames = [f.to_ndarray(format="gray") for f in container.decode(video=0)]
    small = [cv2.resize(f, (THUMB_W, THUMB_H), interpolation=cv2.INTER_AREA) for f in frames]
    return normalised(np.stack(small).astype(np.float32))


def loop_phase(thumbs: Thumbs, fps: int, grabs: list[tuple[float, Thumbs]]) -> tuple[float, float]:
    """The clip time (seconds) shown at the last grab, and the mean error of the fit. Every
    start frame is tried against all the grabs at their own times, so similar-looking frames
    elsewhere in the loop cannot fool it."""
    n = len(thumbs)
    t_last = grabs[-1][0]
    errors = np.zeros(n)
    for t, grey in grabs:
        shift = round((t - t_last) * fps)
        idx = (np.arange(n) + shift) % n
        errors += ((thumbs[idx] - grey) ** 2).mean(axis=(1, 2))
    best = int(np.argmin(errors))
    return best / fps, float(errors[best] / len(grabs))


async def start_on_neutral(advisor: Page, cust: Page, clip: Clip, thumbs: Thumbs) -> str:
    """Click ``#verify-start`` so that the baseline falls on the clip's neutral stretch."""
    loop = clip.frames / clip.fps
    grabs = []
    for _ in range(6):
        got = await cust.evaluate(THUMB_JS, "#local-video")
        grey = normalised(np.asarray(got["grey"], dtype=np.float32).reshape(THUMB_H, THUMB_W))
        grabs.append((float(got["t"]), grey))
        await asyncio.sleep(0.15)
    phase, error = await asyncio.to_thread(loop_phase, thumbs, clip.fps, grabs)
    now = float(await cust.evaluate("() => performance.now() / 1000"))
    phase_now = (phase + now - grabs[-1][0]) % loop
    wait = (BASELINE_AT - START_LATENCY - phase_now) % loop
    await asyncio.sleep(wait)
    await advisor.click("#verify-start")
    return (
        f"loop phase {phase_now:.2f} s (fit error {error:.3f}), clicked {wait:.2f} s later, "
        f"baseline expected from {(phase_now + wait + START_LATENCY) % loop:.2f} s of the loop"
    )


class Frames:
    """Every WebSocket text frame one page received, parsed."""

    def __init__(self, page: Page) -> None:
        self.raw: list[str] = []
        self._arrived = asyncio.Event()
        page.on("websocket", lambda ws: ws.on("framereceived", self._add))

    def _add(self, payload: str | bytes) -> None:
        self.raw.append(payload if isinstance(payload, str) else payload.decode(errors="replace"))
        self._arrived.set()

    async def wait_for(self, kind: str, count: int, timeout_s: float) -> list[dict[str, Any]]:
        """The ``kind`` messages once there are at least ``count`` (or when time is up)."""
        async with asyncio.timeout(timeout_s):
            while len(self.messages(kind)) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.messages(kind)

    def messages(self, kind: str | None = None) -> list[dict[str, Any]]:
        out = []
        for text in self.raw:
            try:
                m = json.loads(text)
            except ValueError:
                continue
            if isinstance(m, dict) and (kind is None or m.get("type") == kind):
                out.append(m)
        return out


async def messages_of(page: Page) -> dict[str, str]:
    """The page's message catalogue (what the scripts show)."""
    result: dict[str, str] = await page.evaluate(
        "() => JSON.parse(document.getElementById('cb-config').textContent).messages"
    )
    return result


async def wait_outcome(page: Page, who: str, outcomes: tuple[str, ...], timeout_ms: int) -> str:
    """The ``data-outcome`` of the shown result, once it is one of ``outcomes``."""
    try:
        await page.wait_for_function(
            """(outcomes) => {
              const r = document.getElementById("verify-result");
              const o = document.getElementById("verify-outcome");
              return !!r && !r.hidden && outcomes.includes(o.dataset.outcome);
            }""",
            arg=list(outcomes),
            timeout=timeout_ms,
        )
    except PlaywrightError as err:
        log = await page.evaluate("() => window.__verifyLog || null")
        raise AssertionError(f"{who}: no {outcomes} result after {timeout_ms} ms; {log}") from err
    return await page.locator("#verify-outcome").get_attribute("data-outcome") or ""


def timeline(progress: list[dict[str, Any]]) -> str:
    """The verify.progress messages, compressed to their changes."""
    steps, last = [], None
    for m in progress:
        step = (m["phase"], m.get("index"), m.get("challenge"), m.get("met"), m.get("guidance"))
        if step != last:
            steps.append(
                f"{m['phase']}[{m.get('index')}] {m.get('challenge') or '-'} met={m.get('met')}"
                + (f" guidance={m['guidance']}" if m.get("guidance") else "")
            )
            last = step
    return "\n  ".join(steps)


async def test_advisor_verifies_the_customer_and_only_the_advisor_sees_the_evidence(
    server: Server, browsers: Browsers, clips: dict[str, Clip]
) -> None:
    base, customer = server.base_url, server.customers["verifier"]
    assert clips["verifier"].face_fraction >= 0.9, "no face in the verification clip itself"
    t0 = time.monotonic()

    advisor = await browsers.page(await browsers.launch(clips["advisor"].y4m), "advisor")
    cust = await browsers.page(await browsers.launch(clips["verifier"].y4m), "customer")
    advisor_ws, customer_ws = Frames(advisor), Frames(cust)

    # ---- into a call with media flowing --------------------------------------------------
    await staff_login(advisor, base, "advisor1")
    await set_available(advisor)
    await intake(cust, base, customer)
    await expect(cust.locator("#device-continue")).to_be_enabled(timeout=15_000)
    await cust.click("#device-continue")
    await expect(cust).to_have_url(re.compile(r"/call\b"))
    entry = advisor.locator("#queue-list .queue-entry", has_text=customer.name)
    await expect(entry, "the waiting customer in the advisor's queue").to_be_visible(timeout=15_000)
    await entry.locator(".accept-btn").click()
    for page in (advisor, cust):
        await expect(page.locator("#call-panel")).to_be_visible(timeout=10_000)
    # The customer's video reaches the server (which taps it) and the advisor.
    await wait_playing(advisor, "#remote-video", "advisor")
    await wait_playing(cust, "#local-video", "customer's own video")

    # ---- the attempt ---------------------------------------------------------------------
    thumbs = await asyncio.to_thread(clip_thumbs, clips["verifier"])
    catalogue = await messages_of(cust)
    vocabulary = VERIFY_VOCABULARY.split(",")
    challenge_texts = {catalogue[f"verify.challenge.{code}"]: code for code in vocabulary}
    for page in (advisor, cust):
        await page.evaluate(RECORD_JS)
        await expect(page.locator("#verify-panel")).to_be_hidden()
    await expect(cust.locator("#face-guide")).to_be_hidden()
    start = advisor.locator("#verify-start")
    await expect(start).to_be_visible()
    sync = await start_on_neutral(advisor, cust, clips["verifier"], thumbs)
    started_at = time.monotonic()

    for page in (advisor, cust):
        await expect(page.locator("#verify-panel")).to_be_visible(timeout=10_000)
    guide = cust.locator("#face-guide")
    await expect(guide, "the face oval over the customer's video").to_be_visible()
    await expect(cust.locator("#verify-steps li")).to_have_count(3)
    started = advisor_ws.messages("verify.started")
    assert len(started) == 1, started
    # The plan stays on the server: the pages learn how many steps, and each step when shown.
    assert started[0]["total"] == 3 and "challenges" not in started[0], started
    step = catalogue["verify.step"]
    await expect(cust.locator("#verify-steps li")).to_have_text(
        [step.replace("{n}", str(n)).replace("{total}", "3") for n in (1, 2, 3)]
    )

    outcome = await wait_outcome(cust, "customer", DECISIONS, DECISION_TIMEOUT_MS)
    decided_after = time.monotonic() - started_at
    assert await wait_outcome(advisor, "advisor", DECISIONS, 5_000) == outcome

    # What the advisor was told, and the history of both panels.
    results = advisor_ws.messages("verify.result")
    assert len(results) == 1, results
    result = results[0]
    progress = advisor_ws.messages("verify.progress")
    revealed: dict[int, str] = {}
    for m in progress:
        if m["phase"] == "challenge" and m.get("challenge"):
            assert revealed.setdefault(m["index"], m["challenge"]) == m["challenge"], progress
    drawn = [revealed[i] for i in sorted(revealed)]
    assert set(drawn) <= set(vocabulary), f"not from the vocabulary: {drawn}"
    # What the customer's page received, message by message: never a challenge before its turn.
    seen = -1
    for m in customer_ws.messages("verify.progress"):
        if m.get("challenge"):
            assert m["phase"] == "challenge" and m["index"] <= seen + 1, m
            seen = max(seen, m["index"])
        assert "challenges" not in m and "plan" not in m, m
    logs = {
        who: await page.evaluate("() => window.__verifyLog")
        for who, page in (("advisor", advisor), ("customer", cust))
    }
    print(
        f"verification: outcome={outcome} after {decided_after:.1f} s; challenges={drawn}; "
        f"reasons={result['reasons']}; scores={result['scores']}; "
        f"attempts_left={result['attempts_left']}; start: {sync}\n  {timeline(progress)}"
    )
    print("customer panel history:", *logs["customer"], sep="\n  ")

    # The customer was guided step by step: first "look at the camera", then "hold still" before
    # an instruction (its action is not revealed yet) and the instructions themselves. A looping
    # clip cannot listen, so it is a replay: the server may rightly stop it when it moves during
    # a "hold still" pause (``liveness.moved_before_prompt``) before any instruction is shown.
    instructions = [e["instruction"] for e in logs["customer"]]
    assert catalogue["verify.instruction.baseline"] in instructions, instructions
    phases = [m["phase"] for m in progress]
    assert "hold" in phases, timeline(progress)
    assert catalogue["verify.instruction.hold"] in instructions, instructions
    shown = [challenge_texts[i] for i in instructions if i in challenge_texts]
    if shown:
        assert shown[0] == drawn[0], (shown, drawn)
    else:
        assert "liveness.moved_before_prompt" in result["reasons"], (result, instructions)
    met = max((m["met"] for m in progress), default=0)
    for who, log in logs.items():
        done = max(e["done"] for e in log)
        assert done == met or (outcome == "pass" and done == 3), (who, log, met)
    if outcome == "pass":
        assert met == 3 and len(drawn) == 3, timeline(progress)
        await expect(cust.locator("#verify-steps li .step-text")).to_have_text(
            [catalogue[f"verify.challenge.{c}"] for c in drawn]
        )

    # ---- the advisor's evidence ----------------------------------------------------------
    assert result["best_frame_url"], result
    for sel in ("#verify-best", "#verify-reference"):
        try:
            await advisor.wait_for_function(IMAGE_LOADED_JS, arg=sel, timeout=5_000)
        except PlaywrightError as err:
            src = await advisor.locator(sel).get_attribute("src")
            raise AssertionError(f"advisor: {sel} ({src}) did not load") from err
    reasons_shown = await advisor.locator("#verify-reasons li").all_inner_texts()
    scores_shown = await advisor.locator("#verify-scores dd").all_inner_texts()
    assert len(reasons_shown) == len(result["reasons"]), (reasons_shown, result["reasons"])
    assert len(scores_shown) == len(result["scores"]), (scores_shown, result["scores"])
    if outcome != "pass":
        assert reasons_shown, f"a {outcome} without a reason"
    if "liveness" not in " ".join(result["reasons"]):  # liveness done: the face was compared
        assert "match" in result["scores"], result
        await expect(advisor.locator("#verify-scores dt").first).to_have_text(
            catalogue["verify.score.match"]
        )
    for url in (result["best_frame_url"], result["reference_url"]):
        got = await advisor.request.get(base + url)
        assert got.status == 200 and got.headers["content-type"] == "image/jpeg", (url, got.status)

    # ---- nothing of it on the customer's side --------------------------------------------
    told = catalogue[f"verify.outcome.{outcome}"]
    await expect(cust.locator("#verify-outcome")).to_have_text(told)
    for sel in ("#verify-best", "#verify-reference", "#verify-scores", "#verify-reasons"):
        await expect(cust.locator(sel), f"{sel} on the customer's page").to_have_count(0)
    await expect(cust.locator("#verify-panel img")).to_have_count(0)
    await expect(cust.locator("#face-guide")).to_be_hidden()
    customer_results = customer_ws.messages("verify.result")
    assert len(customer_results) == 1, customer_results
    copy = customer_results[0]
    assert copy["outcome"] == outcome
    assert copy.get("scores") in (None, {}) and copy.get("reasons") in (None, []), copy
    assert copy.get("best_frame_url") is None and copy.get("reference_url") is None, copy
    received = "\n".join(customer_ws.raw)
    staff_only = ["/staff/verification/", ".jpg", *result["reasons"]]
    staff_only += [str(v) for v in result["scores"].values()]
    page_text = await cust.locator("body").inner_text()
    for secret in staff_only:
        assert secret not in received, f"the customer's browser received {secret!r}"
        assert secret not in page_text, f"the customer's page shows {secret!r}"
    # ... and cannot fetch the images either.
    for url in (result["best_frame_url"], result["reference_url"]):
        got = await cust.request.get(base + url, max_redirects=0)
        assert got.status in (302, 303, 401, 403), (url, got.status)
        assert got.headers.get("content-type", "") != "image/jpeg", url

    # ---- at most three attempts per case -------------------------------------------------
    left = result["attempts_left"]
    assert left == 2, result
    for n in range(left):
        await expect(start).to_be_visible()
        await start.click()
        await expect(advisor.locator("#verify-cancel")).to_be_visible(timeout=10_000)
        await advisor.click("#verify-cancel")
        await wait_outcome(advisor, f"advisor, attempt {n + 2}", ("aborted",), 10_000)
        await wait_outcome(cust, f"customer, attempt {n + 2}", ("aborted",), 5_000)
    await expect(start, "no attempts left: no start button").to_be_hidden()
    assert advisor_ws.messages("verify.result")[-1]["attempts_left"] == 0
    # A start sent anyway is refused by the server.
    errors_before = len(advisor_ws.messages("error"))
    await advisor.evaluate("() => { document.getElementById('verify-start').hidden = false; }")
    await start.click()
    refused = (await advisor_ws.wait_for("error", errors_before + 1, 5))[errors_before:]
    assert [m.get("code") for m in refused] == ["verify_limit"], refused
    assert len(advisor_ws.messages("verify.started")) == 3

    await advisor.click("#hangup")
    for page in (advisor, cust):
        await expect(page.locator("#ended-panel")).to_be_visible(timeout=5_000)
    print(f"test body took {time.monotonic() - t0:.1f} s")
