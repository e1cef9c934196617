"""Catalogues: complete in both languages, every key the pages and scripts use exists."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from signaling.messages import ErrorCode
from web.i18n import SUPPORTED, Catalog, negotiate, placeholders

WEB = Path(__file__).resolve().parents[2] / "web"
TEMPLATE_KEY = re.compile(r"""\bt\(\s*["']([^"']+)["']\s*[,)]""")
SCRIPT_KEY = re.compile(r"""["'`]((?:js|error|service)\.[A-Za-z0-9_.]+)["'`]""")
SCRIPT_DYNAMIC = re.compile(r"""`((?:js|error|service)\.[A-Za-z0-9_.]*)\$\{""")

# Keys the scripts build from a prefix (``msg(`js.presence.${status}`)``), with every value.
DYNAMIC_KEYS = {
    "js.call.peer_": ["customer", "advisor"],
    "js.call.started_": ["customer", "advisor"],
    "js.ended.by_": ["customer", "advisor"],
    "js.presence.": ["offline", "available", "away", "in_call"],
    "error.": [code.value for code in ErrorCode],
    "service.": [
        f"{code}.title"
        for code in ("pin_change", "card_loss", "phone_change", "ukey_reset", "consultation")
    ],
    "js.ended.reason.": ["disconnected", "timeout", "error"],
}
SERVER_KEYS = [
    "identify.error.generic",
    "identify.error.rate_limited",
    "consent.error.required",
    "login.error.invalid",
    "login.error.rate_limited",
    "consent.body",
    *(
        f"service.{c}.{p}"
        for c in ("pin_change", "card_loss", "phone_change", "ukey_reset", "consultation")
        for p in ("title", "desc")
    ),
]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog()


def _scan(pattern: re.Pattern[str], files: list[Path]) -> set[str]:
    return {key for f in files for key in pattern.findall(f.read_text(encoding="utf-8"))}


def test_both_catalogues_have_the_same_keys(catalog: Catalog) -> None:
    assert catalog.keys("zh-CN") == catalog.keys("en")


def test_placeholders_match_between_languages(catalog: Catalog) -> None:
    for key in catalog.keys("en"):
        en = placeholders(catalog.translate("en", key))
        zh = placeholders(catalog.translate("zh-CN", key))
        assert en == zh, key


def test_chinese_catalogue_is_really_chinese(catalog: Catalog) -> None:
    assert catalog.translate("zh-CN", "service.pin_change.title") == "借记卡密码修改"
    untranslated = [
        k
        for k in catalog.keys("zh-CN")
        if not k.startswith("lang.") and catalog.translate("zh-CN", k) == catalog.translate("en", k)
    ]
    assert untranslated == []


def test_every_template_key_exists(catalog: Catalog) -> None:
    keys = _scan(TEMPLATE_KEY, sorted((WEB / "templates").glob("*.html")))
    assert len(keys) > 50
    assert keys - catalog.keys("en") == set()


def test_every_script_key_exists_and_is_sent_to_scripts(catalog: Catalog) -> None:
    files = sorted((WEB / "static" / "js").glob("*.js"))
    keys = _scan(SCRIPT_KEY, files)
    keys |= {prefix + rest for prefix, rests in DYNAMIC_KEYS.items() for rest in rests}
    for lang in SUPPORTED:
        assert keys - set(catalog.for_scripts(lang)) == set()


def test_every_dynamic_script_prefix_is_listed() -> None:
    files = sorted((WEB / "static" / "js").glob("*.js"))
    assert _scan(SCRIPT_DYNAMIC, files) <= set(DYNAMIC_KEYS)


def test_keys_the_server_renders_exist(catalog: Catalog) -> None:
    assert set(SERVER_KEYS) - catalog.keys("en") == set()


def test_for_scripts_is_a_subset(catalog: Catalog) -> None:
    messages = catalog.for_scripts("zh-CN")
    assert "identify.heading" not in messages
    assert messages["js.queue.position"] == "您排在第 {position} 位。"


def test_translate_formats(catalog: Catalog) -> None:
    assert catalog.translate("en", "step.indicator", current=2, total=5) == "Step 2 of 5"
    assert catalog.translate("zh-CN", "step.indicator", current=2, total=5) == "第 2 步，共 5 步"


def test_translate_never_raises(catalog: Catalog, caplog: pytest.LogCaptureFixture) -> None:
    assert catalog.translate("en", "step.indicator") == "Step {current} of {total}"
    assert catalog.translate("en", "step.indicator", current=1) == "Step 1 of {total}"
    with caplog.at_level(logging.WARNING, logger="web.i18n"):
        assert catalog.translate("zh-CN", "no.such.key") == "no.such.key"
        assert catalog.translate("zh-CN", "no.such.key") == "no.such.key"
        assert catalog.translate("fr", "services.next") == "Next"
    assert sum("no.such.key" in r.getMessage() for r in caplog.records) == 1


def test_translator_is_bound_to_a_language(catalog: Catalog) -> None:
    t = catalog.translator("zh-CN")
    assert t("services.next") == "下一步"


def test_catalog_loads_from_any_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert Catalog().translate("en", "services.next") == "Next"


@pytest.mark.parametrize(
    ("accept", "cookie", "expected"),
    [
        (None, None, "zh-CN"),
        ("en-US,en;q=0.9", None, "en"),
        ("en-GB", None, "en"),
        ("zh", None, "zh-CN"),
        ("zh-Hans", None, "zh-CN"),
        ("zh-CN,zh;q=0.9,en;q=0.8", None, "zh-CN"),
        ("fr-FR,en;q=0.5,zh;q=0.8", None, "zh-CN"),
        ("fr-FR,de;q=0.5", None, "zh-CN"),
        ("en;q=0,zh;q=0.1", None, "zh-CN"),
        ("en;q=bad,zh-CN;q=0.3", None, "zh-CN"),
        ("zh-CN", "en", "en"),
        ("en", "zh-CN", "zh-CN"),
        ("en", "klingon", "en"),
        ("", "", "zh-CN"),
        ("*", None, "zh-CN"),
    ],
)
def test_negotiate(accept: str | None, cookie: str | None, expected: str) -> None:
    assert negotiate(accept, cookie, "zh-CN") == expected


def test_negotiate_uses_the_default() -> None:
    assert negotiate("de", None, "en") == "en"
    assert negotiate(None, None, "xx") == "zh-CN"


def test_every_quality_instruction_and_challenge_has_a_text_in_both_languages() -> None:
    from verification.challenges import Action
    from verification.quality import QualityIssue

    catalog = Catalog()
    keys = [issue.message_key for issue in QualityIssue]
    keys += [f"verify.challenge.{action.value}" for action in Action]
    for lang in ("zh-CN", "en"):
        missing = [k for k in keys if not catalog.has(lang, k)]
        assert missing == [], f"{lang}: {missing}"
