"""The consent text names face comparison (biometric data, the images and scores kept as
evidence) and how long it is all kept (the settings' retention days); a changed text gets a
new version, and a case keeps the version and hash of the very text the customer agreed to."""

from __future__ import annotations

import hashlib
import html
import re
from pathlib import Path

import pytest
from sqlalchemy import select

from cases import consent as consent_module
from cases.consent import (
    CURRENT_VERSION,
    consent_texts,
    consent_version,
    retention_words,
    whole_years,
)
from store.models import Case, ConsentText
from tests.web.conftest import csrf_of, identify, make_settings, running_world
from web.keys import DB

# The wording of CURRENT_VERSION, pinned (a prefix of the sha256 of its texts): a change of
# the text must come with a new version; then pin the new pair here.
CURRENT_WORDING = ("2026-12-v2", "a2fe7028bbb1f87f")
# The 2026-11-v1 texts as customers agreed to them (stored since 2026-11): never changed.
V1_SHA256 = {"en": "2aa11d95a09fc463", "zh-CN": "0cd2b585fdd5440b"}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_the_text_names_face_comparison_and_the_retention_period() -> None:
    texts = consent_texts(1826)
    en, zh = texts["en"], texts["zh-CN"]
    for word in ("recorded", "compares your face", "photo", "biometric", "scores", "evidence"):
        assert word in en, word
    assert "kept for 5 years" in en and "deleted" in en
    for word in ("录音录像", "人脸比对", "生物识别信息", "比对分数", "核验证据", "保存5年"):
        assert word in zh, word
    assert "{" not in en + zh


@pytest.mark.parametrize(
    ("days", "en", "zh"),
    [
        (1826, "5 years", "5年"),
        (1827, "5 years", "5年"),
        (365, "1 year", "1年"),
        (366, "1 year", "1年"),
        (730, "2 years", "2年"),
        (3652, "10 years", "10年"),
        (1000, "1000 days", "1000天"),
        (400, "400 days", "400天"),
        (90, "90 days", "90天"),
        (1, "1 day", "1天"),
    ],
)
def test_retention_is_said_in_years_when_whole_else_in_days(days: int, en: str, zh: str) -> None:
    assert retention_words(days, "en") == en
    assert retention_words(days, "zh-CN") == zh
    assert (whole_years(days) is not None) == en.endswith(("year", "years"))


def test_the_version_changes_with_the_text() -> None:
    assert consent_version(1826) == f"{CURRENT_VERSION}-1826d"
    assert CURRENT_VERSION != "2026-11-v1", "the text changed: it needs a new version"
    versions, texts = {}, {}
    for days in (1826, 365, 1000):
        versions[days], texts[days] = consent_version(days), consent_texts(days)
    assert len(set(versions.values())) == 3 and len({t["en"] for t in texts.values()}) == 3
    assert all(len(v) <= 32 for v in versions.values())  # consent_texts.version is String(32)
    with pytest.raises(ValueError):
        consent_version(0)


def test_a_changed_wording_needs_a_new_version() -> None:
    """The hash of the current wording is tied to its version: edit the text, bump
    ``CURRENT_VERSION`` and put the new pair here."""
    wording = "\n".join(consent_module._CURRENT[lang] for lang in sorted(consent_module._CURRENT))
    assert (CURRENT_VERSION, _sha(wording)[:16]) == CURRENT_WORDING


def test_texts_customers_agreed_to_are_kept_word_for_word() -> None:
    old = consent_module._PREVIOUS["2026-11-v1"]
    assert {lang: _sha(text)[:16] for lang, text in old.items()} == V1_SHA256


def _shown_text(page: str) -> str:
    section = page.split('id="consent-text-title"', 1)[1].split('class="consent-version"', 1)[0]
    paragraphs = re.findall(r"<p>(.*?)</p>", section, re.S)
    return "\n\n".join(html.unescape(p.strip()) for p in paragraphs)


@pytest.mark.parametrize(("days", "period"), [(None, "5 years"), ("1000", "1000 days")])
async def test_the_page_shows_the_settings_period_and_the_case_keeps_that_text(
    tmp_path: Path, shared_data: Path, days: str | None, period: str
) -> None:
    extra = {"CLOUDBRANCH_RETENTION_DAYS": days} if days else {}
    settings = make_settings(tmp_path, shared_data, **extra)
    async with running_world(settings, shared_data) as world:
        client = await world.make_client()
        await identify(client, world.ada)
        page = await (await client.get("/consent")).text()
        version = consent_version(int(days or 1826))
        assert f"kept for {period}" in page and "biometric" in page
        assert version in page
        shown = _shown_text(page)
        # A page opened before the text changed is not taken as agreement to the new one.
        stale = await client.post(
            "/consent",
            data={"csrf_token": csrf_of(page), "accept": "on", "consent_version": "2026-11-v1"},
            allow_redirects=False,
        )
        assert stale.status == 400 and "The consent text has changed" in await stale.text()
        resp = await client.post(
            "/consent",
            data={"csrf_token": csrf_of(page), "accept": "on", "consent_version": version},
            allow_redirects=False,
        )
        assert resp.status == 303 and resp.headers["Location"] == "/device-check"
        async with world.app[DB].session() as s:
            case = (await s.scalars(select(Case))).one()
            stored = (
                await s.scalars(
                    select(ConsentText).where(
                        ConsentText.version == version, ConsentText.lang == "en"
                    )
                )
            ).one()
        assert (case.consent_version, case.consent_sha256) == (version, stored.sha256)
        assert stored.text == shown and stored.sha256 == _sha(shown)
