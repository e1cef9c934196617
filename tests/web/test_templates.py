"""Every page renders in both languages, with and without elderly mode, and keeps the contract
of docs/pages.md: its element ids, labels on inputs, one <h1>, and nothing that a strict CSP
(``script-src 'self'``, no inline style) would block."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jinja2
import pytest

from banking.core import Notification
from web.i18n import SUPPORTED, Catalog

WEB = Path(__file__).resolve().parents[2] / "web"
JS = WEB / "static" / "js"

SERVICES = [
    {"code": c, "title_key": f"service.{c}.title", "desc_key": f"service.{c}.desc"}
    for c in ("pin_change", "card_loss", "phone_change", "ukey_reset", "consultation")
]
HEADER = {"lang-en", "lang-zh"}
CALL_IDS = {
    "call-panel",
    "remote-video",
    "local-video",
    "peer-name",
    "chat-log",
    "chat-input",
    "chat-send",
    "hangup",
    "ended-panel",
    "ended-reason",
    "media-error",
}

# page: (context, ids docs/pages.md requires)
PAGES: dict[str, tuple[dict[str, Any], set[str]]] = {
    "service.html": (
        {"services": SERVICES},
        {"elderly-toggle", "service-next"} | {f"service-{s['code']}" for s in SERVICES},
    ),
    "identify.html": (
        {"service": "pin_change", "error": None, "values": {}},
        {
            "elderly-toggle",
            "id-name",
            "id-number",
            "id-card-last4",
            "identify-submit",
            "identify-error",
        },
    ),
    "consent.html": (
        {
            "consent_text": "We record.\n\nFor safety.",
            "consent_version": "2026-11-v1",
            "service": "pin_change",
        },
        {"elderly-toggle", "consent-accept", "consent-submit", "consent-error"},
    ),
    "device_check.html": (
        {},
        {
            "elderly-toggle",
            "preview",
            "device-status",
            "mic-level",
            "device-retry",
            "device-continue",
        },
    ),
    "call.html": (
        {"case_id": "c_123", "service": "card_loss"},
        {
            "elderly-toggle",
            "waiting-panel",
            "queue-position",
            "queue-wait",
            "media-retry",
            "queue-leave",
        }
        | CALL_IDS,
    ),
    "staff_login.html": (
        {"error": None},
        {"login-username", "login-password", "login-submit", "login-error"},
    ),
    "advisor.html": (
        {"staff_name": "Wang Fang"},
        {"logout", "presence-toggle", "presence-status", "queue-list", "queue-empty"} | CALL_IDS,
    ),
    "approvals.html": (
        {"staff_name": "Li Na"},
        {"logout", "approvals-status", "approvals-list", "approvals-empty"},
    ),
    "outbox.html": (
        {
            "notifications": [
                Notification(
                    1, 7, "13912345678", "otp", "Your code is 123456.", datetime(2026, 11, 29)
                )
            ]
        },
        {"logout", "outbox-table"},
    ),
}
CUSTOMER = {"service.html", "identify.html", "consent.html", "device_check.html", "call.html"}


@dataclass
class Page:
    """What html.parser saw in one rendered page."""

    tags: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    label_for: set[str] = field(default_factory=set)
    labelled_inputs: int = 0
    scripts: list[tuple[dict[str, str], str]] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        return [a["id"] for _, a in self.tags if "id" in a]

    def by_id(self, ident: str) -> tuple[str, dict[str, str]]:
        return next((tag, a) for tag, a in self.tags if a.get("id") == ident)

    def all(self, tag: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag]


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._label_depth = 0
        self._script: dict[str, str] | None = None
        self._text_of: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.page.tags.append((tag, a))
        if tag == "label":
            self._label_depth += 1
            if "for" in a:
                self.page.label_for.add(a["for"])
        if tag == "input" and self._label_depth:
            a["_wrapped"] = "1"
        if tag == "script":
            self._script = a
            self._text_of = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._label_depth -= 1
        if tag == "script" and self._script is not None:
            self.page.scripts.append((self._script, "".join(self._text_of)))
            self._script = None

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._text_of.append(data)


def parse(html: str) -> Page:
    parser = _Parser()
    parser.feed(html)
    parser.close()
    return parser.page


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog()


@pytest.fixture(scope="module")
def env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(WEB / "templates"), autoescape=True)


def render(
    env: jinja2.Environment,
    catalog: Catalog,
    name: str,
    lang: str = "en",
    elderly: bool = False,
    **extra: Any,
) -> str:
    context: dict[str, Any] = {
        "t": catalog.translator(lang),
        "lang": lang,
        "elderly": elderly,
        "csrf_token": "tok-123",
        "path": "/some/page",
        "static": lambda p: "/static/" + p,
        "messages": catalog.for_scripts(lang),
        **PAGES[name][0],
        **extra,
    }
    return env.get_template(name).render(context)


CASES = [(n, lang, e) for n in PAGES for lang in SUPPORTED for e in (False, True)]


@pytest.mark.parametrize(("name", "lang", "elderly"), CASES)
def test_page_keeps_the_contract(
    env: jinja2.Environment, catalog: Catalog, name: str, lang: str, elderly: bool
) -> None:
    page = parse(render(env, catalog, name, lang, elderly))
    ids = page.ids
    assert (PAGES[name][1] | HEADER) - set(ids) == set()
    assert len(ids) == len(set(ids)), "duplicate ids"
    assert len(page.all("h1")) == 1
    html_attrs = page.all("html")[0]
    assert html_attrs["lang"] == lang
    assert ("elderly" in html_attrs.get("class", "").split()) is elderly
    for tag, attrs in page.tags:
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        assert "style" not in attrs, (tag, attrs)
    for attrs in page.all("input"):
        if attrs.get("type") == "hidden":
            continue
        named = attrs.get("id") in page.label_for or "_wrapped" in attrs
        assert named or attrs.get("aria-label") or attrs.get("aria-labelledby"), attrs


@pytest.mark.parametrize(("name", "lang", "elderly"), CASES)
def test_scripts_are_external_and_config_is_json(
    env: jinja2.Environment, catalog: Catalog, name: str, lang: str, elderly: bool
) -> None:
    page = parse(render(env, catalog, name, lang, elderly))
    configs = [body for attrs, body in page.scripts if attrs.get("id") == "cb-config"]
    assert len(configs) == 1
    config = json.loads(configs[0])
    assert config["lang"] == lang
    assert config["csrf"] == "tok-123"
    assert config["wsPath"] == "/ws"
    assert config["messages"] == catalog.for_scripts(lang)
    for attrs, body in page.scripts:
        if attrs.get("id") == "cb-config":
            assert attrs["type"] == "application/json"
        else:
            assert attrs.get("src", "").startswith("/static/js/")
            assert body.strip() == ""
            assert (JS / attrs["src"].removeprefix("/static/js/")).is_file()


@pytest.mark.parametrize("name", sorted(PAGES))
def test_static_files_referenced_exist(
    env: jinja2.Environment, catalog: Catalog, name: str
) -> None:
    page = parse(render(env, catalog, name))
    urls = [a.get("href", "") for a in page.all("link")] + [a.get("src", "") for _, a in page.tags]
    for url in (u for u in urls if u.startswith("/static/")):
        assert (WEB / "static" / url.removeprefix("/static/")).is_file(), url


def test_customer_pages_show_the_step_and_elderly_switch(
    env: jinja2.Environment, catalog: Catalog
) -> None:
    for number, name in enumerate(
        ["service.html", "identify.html", "consent.html", "device_check.html", "call.html"], 1
    ):
        html = render(env, catalog, name)
        assert f"Step {number} of 5" in html
        page = parse(html)
        assert page.by_id("elderly-toggle")[1]["href"] == "/prefs/elderly?on=1&next=/some/page"
        on = parse(render(env, catalog, name, elderly=True))
        assert on.by_id("elderly-toggle")[1]["href"].startswith("/prefs/elderly?on=0&")
    assert "elderly-toggle" not in parse(render(env, catalog, "advisor.html")).ids


def test_language_links_return_to_the_page(env: jinja2.Environment, catalog: Catalog) -> None:
    page = parse(render(env, catalog, "consent.html", "zh-CN"))
    assert page.by_id("lang-en")[1]["href"] == "/lang/en?next=/some/page"
    assert page.by_id("lang-zh")[1]["href"] == "/lang/zh-CN?next=/some/page"
    assert page.by_id("lang-zh")[1]["aria-current"] == "true"


def test_service_page_has_one_radio_per_service(env: jinja2.Environment, catalog: Catalog) -> None:
    html = render(env, catalog, "service.html", "zh-CN")
    page = parse(html)
    radios = [a for a in page.all("input") if a.get("type") == "radio"]
    assert [r["value"] for r in radios] == [s["code"] for s in SERVICES]
    assert {r["name"] for r in radios} == {"service"}
    form = page.all("form")[0]
    assert (form["method"], form["action"]) == ("get", "/identify")
    for text in ("借记卡密码修改", "银行卡挂失", "预留手机号变更", "U盾密码重置", "综合咨询"):
        assert text in html


def test_identify_shows_the_error_and_never_echoes_the_id_number(
    env: jinja2.Environment, catalog: Catalog
) -> None:
    plain = parse(render(env, catalog, "identify.html"))
    assert "hidden" in plain.by_id("identify-error")[1]
    html = render(
        env,
        catalog,
        "identify.html",
        error="identify.error.generic",
        values={"name": "<b>Li</b>", "card_last4": "1234", "id_number": "110101199003070000"},
    )
    page = parse(html)
    _tag, attrs = page.by_id("identify-error")
    assert attrs["role"] == "alert" and "hidden" not in attrs
    assert catalog.translate("en", "identify.error.generic") in html
    assert "110101199003070000" not in html
    assert page.by_id("id-name")[1]["value"] == "<b>Li</b>"
    assert "<b>Li</b>" not in html
    assert page.by_id("id-card-last4")[1]["value"] == "1234"
    hidden = {a["name"]: a["value"] for a in page.all("input") if a.get("type") == "hidden"}
    assert hidden == {"csrf_token": "tok-123", "service": "pin_change"}


def test_consent_shows_text_version_and_error(env: jinja2.Environment, catalog: Catalog) -> None:
    html = render(env, catalog, "consent.html", "zh-CN", error="consent.error.required")
    page = parse(html)
    assert "We record." in html and "For safety." in html
    assert "2026-11-v1" in html
    assert page.by_id("consent-accept")[1]["name"] == "accept"
    assert "hidden" not in page.by_id("consent-error")[1]
    assert catalog.translate("zh-CN", "consent.error.required") in html


def test_forms_that_post_carry_the_csrf_token(env: jinja2.Environment, catalog: Catalog) -> None:
    for name in PAGES:
        html = render(env, catalog, name, error="identify.error.generic")
        chunks = re.split(r"<form", html)[1:]
        for chunk in chunks:
            if 'method="post"' in chunk.split(">", 1)[0]:
                assert 'name="csrf_token" value="tok-123"' in chunk.split("</form>")[0], name


def test_page_config_fields(env: jinja2.Environment, catalog: Catalog) -> None:
    def config(name: str, **extra: Any) -> dict[str, Any]:
        page = parse(render(env, catalog, name, **extra))
        return dict(json.loads(next(b for a, b in page.scripts if a.get("id") == "cb-config")))

    call = config("call.html")
    assert (call["caseId"], call["service"]) == ("c_123", "card_loss")
    assert config("advisor.html")["staffName"] == "Wang Fang"
    assert config("call.html", config={"caseId": "override"})["caseId"] == "override"
    assert "</script><x>" not in render(env, catalog, "advisor.html", staff_name="</script><x>")


def test_video_elements_have_the_required_attributes(
    env: jinja2.Environment, catalog: Catalog
) -> None:
    page = parse(render(env, catalog, "call.html"))
    assert {"muted", "autoplay", "playsinline"} <= set(page.by_id("local-video")[1])
    assert {"autoplay", "playsinline"} <= set(page.by_id("remote-video")[1])
    assert "muted" not in page.by_id("remote-video")[1]
    assert page.by_id("call-panel")[1].get("hidden") is not None
    assert page.by_id("queue-position")[1]["aria-live"] == "polite"
    assert page.by_id("chat-log")[1]["aria-live"] == "polite"
    check = parse(render(env, catalog, "device_check.html"))
    assert {"muted", "autoplay", "playsinline"} <= set(check.by_id("preview")[1])
    assert "disabled" in check.by_id("device-continue")[1]


def _script_ids(entry: Path, seen: set[Path] | None = None) -> set[str]:
    seen = seen if seen is not None else set()
    if entry in seen:
        return set()
    seen.add(entry)
    source = entry.read_text(encoding="utf-8")
    ids = set(re.findall(r"""\$\(\s*["']([\w-]+)["']\s*\)""", source))
    for imported in re.findall(r"""from\s+["']\./([\w.]+)["']""", source):
        ids |= _script_ids(JS / imported, seen)
    return ids


@pytest.mark.parametrize("name", sorted(PAGES))
def test_every_id_a_script_looks_up_is_on_its_page(
    env: jinja2.Environment, catalog: Catalog, name: str
) -> None:
    page = parse(render(env, catalog, name))
    for attrs, _ in page.scripts:
        if "src" in attrs:
            wanted = _script_ids(JS / attrs["src"].removeprefix("/static/js/"))
            assert wanted - set(page.ids) == set(), attrs["src"]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.parametrize("script", sorted(p.name for p in JS.glob("*.js")))
def test_scripts_parse(script: str) -> None:
    result = subprocess.run(
        ["node", "--check", str(JS / script)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_scripts_never_write_html() -> None:
    for script in JS.glob("*.js"):
        source = script.read_text(encoding="utf-8")
        assert "innerHTML" not in source and "insertAdjacentHTML" not in source, script.name
        assert "eval(" not in source, script.name
