"""The recording-consent text: versioned, stored, and the version + hash kept on each case."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from store.db import Database
from store.models import ConsentText

CURRENT_VERSION = "2026-11-v1"

_TEXTS: dict[str, dict[str, str]] = {
    CURRENT_VERSION: {
        "en": (
            "To protect you, this video session is recorded: your picture, your voice, the chat "
            "and what the advisor is shown of your page. The recording is used to confirm your "
            "identity and your instructions, is kept as banking regulations require, and is "
            "seen only by authorised staff and auditors. Passwords and PINs you type are never "
            "recorded. If you do not agree, you can visit a branch instead."
        ),
        "zh-CN": (
            "为保障您的权益，本次视频服务将全程录音录像，内容包括您的影像、声音、文字交流以及"
            "客户经理看到的页面内容。录像仅用于核实您的身份和业务意愿，按照金融监管要求保存，"
            "仅限经授权的工作人员和审计人员查看。您输入的密码不会被录制。如您不同意，可前往"
            "营业网点办理。"
        ),
    }
}


@dataclass(frozen=True, slots=True)
class Consent:
    """One consent text as shown to a customer."""

    version: str
    lang: str
    text: str
    sha256: str


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def ensure_consent_texts(db: Database) -> None:
    """Store every known consent text once (the stored row is what a case refers to)."""
    async with db.session() as s, s.begin():
        have = {(r.version, r.lang) for r in (await s.scalars(select(ConsentText))).all()}
        now = datetime.now(UTC)
        for version, by_lang in _TEXTS.items():
            for lang, text in by_lang.items():
                if (version, lang) not in have:
                    s.add(
                        ConsentText(
                            version=version, lang=lang, text=text, sha256=_sha(text), created_at=now
                        )
                    )


async def current_consent(db: Database, lang: str) -> Consent:
    """The current consent text in ``lang`` (English when that language has none)."""
    async with db.session() as s:
        rows = (
            await s.scalars(select(ConsentText).where(ConsentText.version == CURRENT_VERSION))
        ).all()
    by_lang = {r.lang: r for r in rows}
    row = by_lang.get(lang) or by_lang["en"]
    return Consent(version=row.version, lang=row.lang, text=row.text, sha256=row.sha256)
