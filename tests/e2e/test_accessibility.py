"""Accessibility of the pages in real Chromium, against the real server process.

Customers are often elderly or low-vision: every customer page (and the staff login and advisor
console) is checked with axe-core in both languages and in elderly mode; a customer gets from the
service choice through the consent with the keyboard alone, seeing where the focus is; elderly
mode really gives large text and large buttons; status texts reach screen readers.

These tests use the ``no_camera`` customer for successful identifications (it never reaches the
queue in the other tests) and provoke identification errors with empty fields, which do not count
against the failed-identification limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.async_api import BrowserContext, Page, expect
from playwright.async_api import Error as PlaywrightError

from tests.e2e.conftest import REPO, STAFF_PASSWORD, Browsers, Customer, Server

pytestmark = pytest.mark.e2e

AXE_JS = REPO / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING_IMPACTS = ("serious", "critical")
LANGS = ("zh-CN", "en")


@dataclass(frozen=True, slots=True)
class Variant:
    """A language and whether elderly mode is on: the cookies the switches set."""

    lang: str
    elderly: bool

    def __str__(self) -> str:
        return self.lang + (" + elderly" if self.elderly else "")


VARIANTS = [Variant(lang, elderly) for elderly in (False, True) for lang in LANGS]

# The violations of one axe run, as plain data (the rest of axe's result is not needed).
AXE_RUN_JS = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help, url: v.helpUrl,
    nodes: v.nodes.map((n) => ({target: n.target.join(" "), html: n.html,
                                summary: n.failureSummary || ""})),
  }));
}"""

# How the focused element shows that it has focus: a visible outline or a box shadow.
FOCUS_JS = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const s = getComputedStyle(el);
  const outline = s.outlineStyle !== "none" && parseFloat(s.outlineWidth) > 0
    && !/rgba\\(.*,\\s*0\\)$/.test(s.outlineColor) && s.outlineColor !== "transparent";
  const shadow = s.boxShadow !== "none";
  const r = el.getBoundingClientRect();
  return {
    id: el.id, tag: el.tagName.toLowerCase(), type: el.getAttribute("type"),
    text: (el.innerText || el.value || "").trim().slice(0, 40),
    outline: outline ? `${s.outlineWidth} ${s.outlineStyle} ${s.outlineColor}` : null,
    shadow: shadow ? s.boxShadow : null, w: r.width, h: r.height,
  };
}"""

# Every visible element that holds text of its own, with its computed font size.
TEXT_SIZES_JS = """() => {
  const out = [];
  for (const el of document.body.querySelectorAll("*")) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || ["SCRIPT", "STYLE", "OPTION"].includes(el.tagName)) continue;
    const r = el.getBoundingClientRect();
    if (r.width <= 1 || r.height <= 1 || el.closest("[hidden]")) continue;  // visually hidden
    out.push({
      what: el.id ? `#${el.id}` : `${el.tagName.toLowerCase()}.${el.className}`,
      text: el.textContent.trim().slice(0, 30), px: parseFloat(getComputedStyle(el).fontSize),
    });
  }
  return out;
}"""

# Every visible button (and link styled as one, and the header switches) with its height.
CONTROL_HEIGHTS_JS = """() => [...document.querySelectorAll(
    "button, .btn, input[type=submit], .switches a")]
  .filter((el) => el.getClientRects().length > 0 && !el.closest("[hidden]"))
  .map((el) => ({what: el.id || el.className || el.tagName.toLowerCase(),
                 text: (el.innerText || "").trim().slice(0, 30),
                 h: el.getBoundingClientRect().height})
)"""


# ---- helpers ----------------------------------------------------------------------------------


async def set_variant(context: BrowserContext, base: str, variant: Variant) -> None:
    """The cookies the language and elderly-mode switches set."""
    await context.add_cookies(
        [
            {"name": "lang", "value": variant.lang, "url": base},
            {"name": "elderly", "value": "1" if variant.elderly else "0", "url": base},
        ]
    )


@functools.cache
def axe_source() -> str:
    if not AXE_JS.is_file():
        pytest.fail(f"{AXE_JS} not found: run `npm ci` (axe-core is a devDependency)")
    return AXE_JS.read_text(encoding="utf-8")


_script_tag_blocked: list[bool] = []  # set once a page's CSP has refused the script tag


async def load_axe(page: Page) -> str:
    """Put axe-core into the page; return how.

    ``add_script_tag`` inserts an inline script, which the pages' CSP (``script-src 'self'``)
    refuses; then the file's text is evaluated through DevTools, which the CSP does not govern.
    """
    source = axe_source()
    if not _script_tag_blocked:
        with contextlib.suppress(PlaywrightError):
            await page.add_script_tag(path=str(AXE_JS))
        if await page.evaluate("() => typeof window.axe?.run") == "function":
            return "script tag"
        _script_tag_blocked.append(True)
    await page.evaluate(source)
    if await page.evaluate("() => typeof window.axe?.run") != "function":
        pytest.fail("axe-core could not be loaded into the page")
    return "evaluate"


async def axe_problems(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations of impact serious or critical on the page as it is now."""
    await load_axe(page)
    violations: list[dict[str, Any]] = await page.evaluate(AXE_RUN_JS)
    return [v for v in violations if v["impact"] in BLOCKING_IMPACTS]


def describe(found: dict[str, list[dict[str, Any]]]) -> str:
    lines = []
    for where, violations in found.items():
        lines.append(f"\n{where}:")
        for v in violations:
            lines.append(f"  [{v['impact']}] {v['id']}: {v['help']} ({v['url']})")
            for node in v["nodes"][:5]:
                lines.append(f"      at {node['target']}: {node['html'][:160]}")
                lines.extend(
                    f"        {line.strip()}" for line in node["summary"].splitlines()[1:4]
                )
            if len(v["nodes"]) > 5:
                lines.append(f"      … and {len(v['nodes']) - 5} more elements")
    return "\n".join(lines)


async def another_context(context: BrowserContext) -> BrowserContext:
    """A second context (own cookies, own session) in the browser of ``context``."""
    assert context.browser is not None
    other = await context.browser.new_context(
        viewport={"width": 1280, "height": 900}, locale="en-US"
    )
    await other.grant_permissions(["camera", "microphone"])
    other.set_default_timeout(10_000)
    return other


async def first_service(page: Page) -> str:
    code = await page.locator("input[name=service]").first.get_attribute("value")
    assert code, "no service offered on the start page"
    return code


async def identify(page: Page, customer: Customer) -> None:
    await page.fill("#id-name", customer.name)
    await page.fill("#id-number", customer.id_number)
    await page.fill("#id-card-last4", customer.card_last4)
    await page.click("#identify-submit")
    await expect(page, "identification with the enrolled data").to_have_url(
        re.compile(r"/consent\b")
    )


async def focus_state(page: Page) -> dict[str, Any]:
    state: dict[str, Any] | None = await page.evaluate(FOCUS_JS)
    assert state is not None, "Tab left the focus on no element"
    return state


async def tab_to(page: Page, element_id: str, *, key: str = "Tab", max_steps: int = 25) -> None:
    """Press ``key`` until ``#element_id`` has the focus; every stop must show its focus."""
    for _ in range(max_steps):
        await page.keyboard.press(key)
        state = await focus_state(page)
        where = f"{state['tag']}#{state['id']} {state['text']!r} on {page.url}"
        assert state["outline"] or state["shadow"], f"focus is not visible on {where}: {state}"
        if state["id"] == element_id:
            return
    raise AssertionError(f"#{element_id} not reached with {max_steps} × {key} on {page.url}")


# ---- tests ------------------------------------------------------------------------------------


async def test_axe_finds_no_serious_problems_on_any_page(
    server: Server, browsers: Browsers
) -> None:
    """Every page state in each language, with and without elderly mode.

    Two customer pages (one per language) walk the journey once per variant; once customers wait
    in the queue, a staff page checks the login and the console. Few pages, reused: each new one
    costs a renderer start and its font loading; and more at once would load two cores so much
    that the test's event loop stalls (tests/conftest.py fails the test then).
    """
    base, customer = server.base_url, server.customers["no_camera"]
    # One customer per language: the two walk at once, and a customer holds one case at a time.
    people = dict(zip(LANGS, (customer, server.customers["no_camera_2"]), strict=False))
    context = await browsers.launch(None)  # Chromium's own fake camera: the device check passes
    found: dict[str, list[dict[str, Any]]] = {}
    customers_waiting = asyncio.Semaphore(0)
    staff_done = asyncio.Event()

    async def audit(page: Page, what: str, variant: Variant) -> None:
        problems = await axe_problems(page)
        if problems:
            found[f"{what} [{variant}] {page.url}"] = problems

    async def customer_pages(lang: str) -> None:
        own = context if lang == LANGS[0] else await another_context(context)
        page = await browsers.page(own, f"customer {lang}")
        variants = [v for v in VARIANTS if v.lang == lang]
        for n, variant in enumerate(variants, 1):
            await set_variant(own, base, variant)
            await page.goto(base + "/")
            await expect(page.locator("html")).to_have_attribute("lang", variant.lang)
            await audit(page, "service choice", variant)
            await page.goto(f"{base}/identify?service={await first_service(page)}")
            await audit(page, "identification", variant)
            await page.click("#identify-submit")  # empty: an error that does not count as a try
            await expect(page.locator("#identify-error")).to_be_visible()
            await audit(page, "identification error", variant)
            await identify(page, people[lang])
            await audit(page, "consent", variant)
            await page.check("#consent-accept")
            await page.click("#consent-submit")
            await expect(page).to_have_url(re.compile(r"/device-check\b"))
            await expect(page.locator("#device-continue")).to_be_enabled()
            await audit(page, "device check", variant)
            await page.click("#device-continue")
            await expect(page).to_have_url(re.compile(r"/call\b"))
            await expect(page.locator("#queue-wait")).not_to_be_empty()  # the position came
            await audit(page, "waiting room", variant)
            if n == len(variants):  # the last one waits while the console is checked
                customers_waiting.release()
                await asyncio.wait_for(staff_done.wait(), timeout=30)
            await page.click("#queue-leave")
            await expect(page).not_to_have_url(re.compile(r"/call\b"))

    async def staff_pages() -> None:
        try:
            await asyncio.wait_for(customers_waiting.acquire(), timeout=60)
            staff = await another_context(context)
            page = await browsers.page(staff, "advisor")
            for variant in VARIANTS:
                await set_variant(staff, base, variant)
                await page.goto(base + "/staff/login")
                await expect(page.locator("html")).to_have_attribute("lang", variant.lang)
                await audit(page, "staff login", variant)
            await page.fill("#login-username", "advisor1")
            await page.fill("#login-password", STAFF_PASSWORD)
            await page.click("#login-submit")
            await expect(page).to_have_url(re.compile(r"/advisor\b"))
            for _ in LANGS[1:]:
                await asyncio.wait_for(customers_waiting.acquire(), timeout=60)
            for variant in VARIANTS:
                await set_variant(staff, base, variant)
                await page.goto(base + "/advisor")
                await expect(page.locator("html")).to_have_attribute("lang", variant.lang)
                entry = page.locator("#queue-list .queue-entry", has_text=customer.name).first
                await expect(entry, "a waiting customer on the console").to_be_visible()
                await audit(page, "advisor console", variant)
        finally:
            staff_done.set()

    async with asyncio.TaskGroup() as flows:  # one failing cancels the others
        for lang in LANGS:
            flows.create_task(customer_pages(lang))
        flows.create_task(staff_pages())
    assert not found, "axe-core found serious or critical problems:" + describe(found)


async def test_keyboard_only_customer_reaches_the_device_check(
    server: Server, browsers: Browsers
) -> None:
    """Service, identification and consent with Tab, Shift+Tab, Space and Enter only."""
    base, customer = server.base_url, server.customers["no_camera"]
    context = await browsers.launch(None)
    page = await browsers.page(context, "customer")
    await set_variant(context, base, Variant("zh-CN", False))
    await page.goto(base + "/")

    # The first Tab stop is the skip link, and it is visible when it has the focus.
    await page.keyboard.press("Tab")
    skip = await focus_state(page)
    assert skip["tag"] == "a" and (skip["outline"] or skip["shadow"]), f"skip link: {skip}"
    assert await page.evaluate("() => document.activeElement.getBoundingClientRect().top >= 0")

    first = page.locator("input[name=service]").first
    first_id = await first.get_attribute("id") or ""
    await tab_to(page, first_id)
    await page.keyboard.press("Space")
    await expect(first).to_be_checked()
    await tab_to(page, "service-next")
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(re.compile(r"/identify\b"))

    await tab_to(page, "id-name")
    await page.keyboard.type(customer.name)
    await tab_to(page, "id-number")
    await page.keyboard.type(customer.id_number)
    await tab_to(page, "id-card-last4")
    await page.keyboard.type(customer.card_last4)
    await tab_to(page, "identify-submit")
    # Back with Shift+Tab to check a field, then forward again.
    await tab_to(page, "id-card-last4", key="Shift+Tab")
    await expect(page.locator("#id-card-last4")).to_have_value(customer.card_last4)
    await tab_to(page, "identify-submit")
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(re.compile(r"/consent\b"))

    # Past the checkbox to the submit button, then back to tick it with Space.
    await tab_to(page, "consent-submit")
    await tab_to(page, "consent-accept", key="Shift+Tab")
    await page.keyboard.press("Space")
    await expect(page.locator("#consent-accept")).to_be_checked()
    await tab_to(page, "consent-submit")
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(re.compile(r"/device-check\b"))
    await tab_to(page, "device-retry")


async def test_elderly_mode_gives_large_text_and_buttons_and_is_remembered(
    server: Server, browsers: Browsers
) -> None:
    base = server.base_url
    context = await browsers.launch(None)
    page = await browsers.page(context, "customer")
    await page.goto(base + "/")
    await expect(page.locator("html")).not_to_have_class(re.compile(r"\belderly\b"))
    before = await page.evaluate("() => parseFloat(getComputedStyle(document.body).fontSize)")

    await page.click("#elderly-toggle")  # the header switch
    await expect(page.locator("html")).to_have_class(re.compile(r"\belderly\b"))
    await expect(page).to_have_url(re.compile(r"/$"))

    async def check_sizes(where: str) -> None:
        body = await page.evaluate("() => parseFloat(getComputedStyle(document.body).fontSize)")
        assert body >= 24, f"{where}: body text is {body}px in elderly mode (was {before}px)"
        small = [t for t in await page.evaluate(TEXT_SIZES_JS) if t["px"] < 24]
        assert not small, f"{where}: text smaller than 24px in elderly mode: {small}"
        low = [c for c in await page.evaluate(CONTROL_HEIGHTS_JS) if c["h"] < 48]
        assert not low, f"{where}: buttons lower than 48px in elderly mode: {low}"
        box = await page.locator("button[type=submit]").first.bounding_box()
        assert box is not None and box["height"] >= 48, f"{where}: submit button box {box}"

    await check_sizes("service choice")
    await page.locator("input[name=service]").first.check()
    await page.click("#service-next")
    await expect(page).to_have_url(re.compile(r"/identify\b"))
    await expect(page.locator("html"), "elderly mode on the next page").to_have_class(
        re.compile(r"\belderly\b")
    )
    await check_sizes("identification")
    await page.click("#identify-submit")
    await expect(page.locator("#identify-error")).to_be_visible()
    await check_sizes("identification error")

    await page.click("#elderly-toggle")  # and off again
    await expect(page.locator("html")).not_to_have_class(re.compile(r"\belderly\b"))


async def test_status_texts_reach_screen_readers_and_lang_follows_the_switch(
    server: Server, browsers: Browsers
) -> None:
    base, customer = server.base_url, server.customers["no_camera"]
    context = await browsers.launch(None)
    page = await browsers.page(context, "customer")
    await set_variant(context, base, Variant("zh-CN", False))
    await page.goto(base + "/")
    html = page.locator("html")
    await expect(html).to_have_attribute("lang", "zh-CN")
    await page.click("#lang-en")
    await expect(html).to_have_attribute("lang", "en")
    await expect(page).to_have_url(re.compile(r"/$"))
    await page.click("#lang-zh")
    await expect(html).to_have_attribute("lang", "zh-CN")
    await expect(page.locator("#lang-zh")).to_have_attribute("aria-current", "true")

    service = await first_service(page)
    await page.goto(f"{base}/identify?service={service}")
    await page.click("#lang-en")  # the switch keeps the page (and its query)
    await expect(html).to_have_attribute("lang", "en")
    await expect(page).to_have_url(re.compile(r"/identify\?service="))
    await page.click("#identify-submit")
    error = page.locator("#identify-error")
    await expect(error).to_be_visible()
    await expect(error).to_have_attribute("role", "alert")
    await expect(error).not_to_be_empty()
    await expect(page.locator("#id-name"), "focus goes to the first field").to_be_focused()
    described = await page.locator("#id-name").get_attribute("aria-describedby") or ""
    assert "identify-error" in described.split(), "the field does not point to the error"

    await identify(page, customer)
    await page.check("#consent-accept")
    await page.click("#consent-submit")
    await expect(page).to_have_url(re.compile(r"/device-check\b"))
    await expect(page.locator("#device-continue")).to_be_enabled(timeout=15_000)
    await page.click("#device-continue")  # /call needs a passed device check
    await expect(page).to_have_url(re.compile(r"/call\b"))
    position = page.locator("#queue-position")
    live = await position.evaluate(
        "(el) => { const r = el.closest('[aria-live]');"
        " return r && {id: r.id, live: r.getAttribute('aria-live')}; }"
    )
    assert live and live["live"] in ("polite", "assertive"), f"#queue-position live region: {live}"
    # The text in that region changes when the server tells the position.
    await expect(position).to_have_text(re.compile(r"\bnext\b|\b\d+\b", re.I))
    await page.click("#queue-leave")
    await expect(page).not_to_have_url(re.compile(r"/call\b"))


def test_axe_core_is_a_dev_dependency() -> None:
    """`npm ci` installs axe-core: it is in package.json and the lock file."""
    package = json.loads((REPO / "package.json").read_text(encoding="utf-8"))
    assert "axe-core" in package.get("devDependencies", {})
    lock = json.loads((REPO / "package-lock.json").read_text(encoding="utf-8"))
    assert "node_modules/axe-core" in lock.get("packages", {})
    assert AXE_JS.is_file(), "node_modules/axe-core is missing: run `npm ci`"


# ---- the identity check's words (hand-made server messages) ----------------------------------

# Every visible element with text of its own inside ``root``, with its computed font size.
TEXT_SIZES_IN_JS = """(root) => {
  const out = [];
  for (const el of document.querySelector(root).querySelectorAll("*")) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    const r = el.getBoundingClientRect();
    if (!own || r.width <= 1 || r.height <= 1 || el.closest("[hidden]")) continue;
    out.push({what: el.id || el.className, text: el.textContent.trim().slice(0, 30),
              px: parseFloat(getComputedStyle(el).fontSize)});
  }
  return out;
}"""
# What the page would say aloud: speechSynthesis.speak records the text instead.
RECORD_SPEECH_JS = """() => {
  window.__spoken = [];
  if ("speechSynthesis" in window) {
    window.speechSynthesis.speak = (u) => window.__spoken.push(u.text);
    window.speechSynthesis.cancel = () => {};
  }
}"""


class FakeServer:
    """The page's WebSocket answered by the test: hand-made server messages (the pages are the
    real server's; only /ws is replaced), and what the page sent."""

    def __init__(self, welcome: dict[str, Any]) -> None:
        self.welcome = welcome
        self.routes: list[Any] = []
        self.sent: list[dict[str, Any]] = []

    async def attach(self, page: Page) -> None:
        await page.route_web_socket(re.compile(r"/ws$"), self._route)

    def _route(self, ws: Any) -> None:
        self.routes.append(ws)
        ws.on_message(lambda raw: self.sent.append(json.loads(raw)))
        ws.send(json.dumps({"v": 1, **self.welcome}))

    def push(self, message: dict[str, Any]) -> None:
        assert self.routes, "the page has not opened its socket"
        self.routes[-1].send(json.dumps({"v": 1, **message}))

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.sent if m.get("type") == kind]

    async def wait_for(self, kind: str, timeout_s: float = 10.0) -> None:
        """Until the page has sent a ``kind`` message (its socket is open and welcomed)."""
        for _ in range(round(timeout_s / 0.05)):
            if self.of_type(kind):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"the page sent no {kind}: {self.sent}")


async def _catalogue(page: Page) -> dict[str, str]:
    got: dict[str, str] = await page.evaluate(
        "() => JSON.parse(document.getElementById('cb-config').textContent).messages"
    )
    return got


STARTED = {"type": "verify.started", "attempt_id": "a1", "total": 3, "seconds_per_challenge": 6}
FAILED = {
    "type": "verify.result",
    "attempt_id": "a1",
    "outcome": "fail",
    "reasons": ["camera.virtual_hint", "liveness.face_lost", "match.below_threshold"],
    "details": [
        {"code": "camera.virtual_hint", "severity": "note"},
        {"code": "liveness.face_lost", "severity": "fail"},
        {"code": "match.below_threshold", "severity": "fail", "score": 0.3012, "threshold": 0.3712},
    ],
    "scores": {"match": 0.3012},
    "thresholds": {"pass": 0.4393, "refer": 0.3712},
    "attempts_left": 2,
    "counted": True,
    "locked": False,
    "advice": "verify.advice.face",
}


async def _advisor_sees_words_and_declines(
    page: Page, fake: FakeServer, found: dict[str, list[dict[str, Any]]]
) -> None:
    words = await _catalogue(page)
    fake.push(
        {"type": "call.started", "case_id": "c_words", "peer_name": "Ada", "service": "pin_change"}
    )
    status = {"service": "pin_change", "step": "verify", "attempt_id": None}
    fake.push({"type": "service.state", "status": status})
    await expect(page.locator("#case-step")).to_have_text(words["service.staff_step.verify"])
    fake.push(STARTED)
    steps = page.locator("#verify-steps li")
    await expect(steps).to_have_text(
        [words["verify.step"].replace("{n}", str(n)).replace("{total}", "3") for n in (1, 2, 3)]
    )
    await expect(
        page.locator("#grant-decline"), "nothing to decline while it runs"
    ).to_be_disabled()
    fake.push({"type": "verify.progress", "attempt_id": "a1", "phase": "hold", "index": 0,
               "challenge": None, "met": 0, "total": 3})  # fmt: skip
    await expect(page.locator("#verify-instruction")).to_have_text(words["verify.instruction.hold"])
    await expect(steps.first.locator(".step-text")).to_be_empty()
    fake.push({"type": "verify.progress", "attempt_id": "a1", "phase": "challenge", "index": 0,
               "challenge": "blink", "met": 0, "total": 3})  # fmt: skip
    await expect(steps.first).to_contain_text(words["verify.challenge.blink"])
    await expect(steps.nth(1).locator(".step-text")).to_be_empty()  # not revealed yet
    fake.push(FAILED)

    reasons = page.locator("#verify-reasons li")
    await expect(reasons).to_have_count(3)
    codes = [await li.get_attribute("data-code") for li in await reasons.all()]
    assert codes == ["liveness.face_lost", "match.below_threshold", "camera.virtual_hint"], codes
    await expect(reasons.first).to_contain_text(words["verify.reason.liveness.face_lost"])
    await expect(reasons.first.locator(".severity-badge")).to_have_text(
        words["verify.staff.severity.fail"]
    )
    await expect(reasons.nth(1)).to_contain_text("score 0.30, threshold 0.37")
    await expect(reasons.nth(2).locator(".severity-badge")).to_have_text(
        words["verify.staff.severity.note"]
    )
    await expect(page.locator("#verify-scores dd")).to_have_text(
        ["0.30 — pass at 0.44, refer at 0.37"]
    )
    await expect(page.locator("#verify-attempts")).to_have_text("2 attempts left in this call")
    await expect(page.locator("#verify-locked")).to_be_hidden()
    await expect(page.locator("#verify-start")).to_be_visible()
    body = await page.locator("body").inner_text()
    assert "liveness.face_lost" not in body and "match.below_threshold" not in body
    problems = await axe_problems(page)
    if problems:
        found["advisor after a failed check"] = problems

    # A failed check can be declined, with the reason required.
    decline = page.locator("#grant-decline")
    await expect(decline).to_be_enabled()
    await expect(page.locator("#grant-confirm")).to_be_disabled()
    await expect(page.locator("#grant-hint")).to_have_text(words["service.case.decline_hint"])
    await decline.click()
    await expect(page.locator("#grant-error")).to_have_text(words["service.case.reason_required"])
    assert fake.of_type("grant.decline") == []
    await page.fill("#decline-reason", "the face is not the one on the photo")
    await decline.click()
    await expect(decline).to_be_disabled()  # sent: waiting for the server
    (sent,) = fake.of_type("grant.decline")
    assert (sent["attempt_id"], sent["reason"]) == ("a1", "the face is not the one on the photo")

    # Undecided: does not count, start again; then a failure that locks the customer out.
    fake.push({"type": "service.state", "status": status})
    fake.push({**STARTED, "attempt_id": "a2"})
    await expect(decline).to_be_disabled()
    fake.push({"type": "verify.result", "attempt_id": "a2", "outcome": "undecided",
               "attempts_left": 2, "counted": False, "advice": "verify.advice.busy"})  # fmt: skip
    await expect(page.locator("#verify-outcome")).to_have_text(words["verify.outcome.undecided"])
    await expect(page.locator("#verify-note")).to_have_text(words["verify.staff.undecided"])
    await expect(decline, "an undecided check is simply run again").to_be_disabled()
    fake.push({**STARTED, "attempt_id": "a3"})
    fake.push({**FAILED, "attempt_id": "a3", "attempts_left": 0, "locked": True})
    await expect(page.locator("#verify-locked")).to_have_text(words["verify.staff.locked"])
    await expect(page.locator("#verify-attempts")).to_have_text(
        words["verify.staff.attempts_left.none"]
    )
    await expect(page.locator("#verify-note")).to_be_hidden()
    await expect(page.locator("#verify-start")).to_be_hidden()
    await expect(decline).to_be_enabled()


async def _customer_hears_plain_words(
    page: Page, fake: FakeServer, found: dict[str, list[dict[str, Any]]]
) -> None:
    words = await _catalogue(page)
    assert not [k for k in words if k.startswith("verify.reason.")], "reasons on a customer page"
    await page.evaluate(RECORD_SPEECH_JS)
    fake.push(
        {"type": "call.started", "case_id": "c_words", "peer_name": "Wang", "service": "pin_change"}
    )
    fake.push(STARTED)
    notice = page.locator("#verify-notice")
    await expect(notice).to_have_text(words["verify.customer.before"])
    await expect(page.locator("#sr-announcer")).to_have_text(words["verify.customer.before"])
    spoken = await page.evaluate("() => window.__spoken")
    assert spoken == [f"{words['verify.customer.before']} {words['verify.instruction.baseline']}"]
    await expect(page.locator("#verify-steps li")).to_have_count(3)
    fake.push({**FAILED, "locked": True, "attempts_left": 0})
    said = " ".join(
        [words["verify.outcome.fail"], words["verify.advice.face"], words["verify.customer.locked"]]
    )
    await expect(page.locator("#verify-outcome")).to_have_text(words["verify.outcome.fail"])
    await expect(page.locator("#verify-advice")).to_have_text(words["verify.advice.face"])
    await expect(page.locator("#verify-locked")).to_have_text(words["verify.customer.locked"])
    await expect(notice).to_be_hidden()
    await expect(page.locator("#sr-announcer")).to_have_text(said)
    assert (await page.evaluate("() => window.__spoken"))[-1] == said
    for sel in ("#verify-reasons", "#verify-scores", "#verify-attempts"):
        await expect(page.locator(sel)).to_have_count(0)
    body = await page.locator("body").inner_text()
    assert "0.30" not in body and "face_lost" not in body
    small = [t for t in await page.evaluate(TEXT_SIZES_IN_JS, "#verify-panel") if t["px"] < 24]
    assert not small, f"verification text smaller than 24px in elderly mode: {small}"
    problems = await axe_problems(page)
    if problems:
        found["customer after a failed check (elderly)"] = problems


async def test_the_identity_check_speaks_in_words_to_both_sides(
    server: Server, browsers: Browsers
) -> None:
    """The advisor's panel and the customer's page driven by hand-made ``verify.*`` messages
    (the server side of the check is tested with real clips in test_verification.py)."""
    base, customer = server.base_url, server.customers["no_camera"]
    context = await browsers.launch(None)
    found: dict[str, list[dict[str, Any]]] = {}

    advisor = await browsers.page(context, "advisor")
    await set_variant(context, base, Variant("en", False))
    staff = FakeServer({"type": "welcome", "role": "advisor", "name": "Advisor"})
    await staff.attach(advisor)
    await advisor.goto(base + "/staff/login")
    await advisor.fill("#login-username", "advisor1")
    await advisor.fill("#login-password", STAFF_PASSWORD)
    await advisor.click("#login-submit")
    await expect(advisor).to_have_url(re.compile(r"/advisor\b"))
    await staff.wait_for("presence.set")
    await _advisor_sees_words_and_declines(advisor, staff, found)

    own = await another_context(context)
    await set_variant(own, base, Variant("zh-CN", True))
    page = await browsers.page(own, "customer")
    await page.goto(f"{base}/identify?service=pin_change")
    await identify(page, customer)
    await page.check("#consent-accept")
    await page.click("#consent-submit")
    await expect(page).to_have_url(re.compile(r"/device-check\b"))
    fake = FakeServer({"type": "welcome", "role": "customer", "name": customer.name,
                       "case_id": "c_words"})  # fmt: skip
    await fake.attach(page)
    await expect(page.locator("#device-continue")).to_be_enabled(timeout=15_000)
    await page.click("#device-continue")  # /call needs a passed device check
    await fake.wait_for("queue.join")
    await _customer_hears_plain_words(page, fake, found)
    assert not found, "axe-core found serious or critical problems:" + describe(found)
