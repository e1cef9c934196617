"""The recording-consent text: versioned, stored, and the version + hash kept on each case.

The current text names the recording, the face comparison (biometric data) and how long the
recording and the check's evidence are kept. The retention period comes from the settings
(``AuditConfig.retention_days``), so it is part of the version: ``2026-12-v2-1826d`` is the
text of ``2026-12-v2`` with 1826 days. A change of the wording needs a new
:data:`CURRENT_VERSION`; a text a customer agreed to is never changed (old versions stay in
:data:`_PREVIOUS` and in the database).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from store.db import Database
from store.models import ConsentText

CURRENT_VERSION = "2026-12-v2"
DEFAULT_RETENTION_DAYS = 1826  # five years (store.config.AuditConfig)
_DAYS_PER_YEAR = 365.25

# The current wording; ``{retention}`` is the period in words (:func:`retention_words`).
_CURRENT: dict[str, str] = {
    "en": (
        "To protect you, this video session is recorded: your picture, your voice, the chat "
        "and what the advisor is shown of your page. The recording is used to confirm your "
        "identity and your instructions, and is seen only by authorised staff and auditors. "
        "Passwords and PINs you type are never recorded.\n\n"
        "To check that it is really you, our system compares your face in the video with the "
        "photo the bank holds of you. This face comparison uses biometric data. The pictures "
        "used for the comparison and its scores are kept as evidence of the check.\n\n"
        "The recording and this evidence are kept for {retention} after your request is "
        "closed, as banking regulations require, and are then deleted. If you do not agree, "
        "you can visit a branch instead."
    ),
    "zh-CN": (
        "为保障您的权益，本次视频服务将全程录音录像，内容包括您的影像、声音、文字交流以及"
        "客户经理看到的页面内容。录像仅用于核实您的身份和业务意愿，仅限经授权的工作人员和"
        "审计人员查看。您输入的密码不会被录制。\n\n"
        "为确认是您本人办理，系统会将视频中您的面部与银行留存的您的照片进行比对。人脸比对"
        "使用您的生物识别信息。比对所用的图像及比对分数将作为核验证据保存。\n\n"
        "录像和上述核验证据将按照金融监管要求，在业务办结后保存{retention}，到期后删除。"
        "如您不同意，可前往营业网点办理。"
    ),
}

# Texts customers agreed to before: kept word for word (cases refer to them by version).
_PREVIOUS: dict[str, dict[str, str]] = {
    "2026-11-v1": {
        "en": (
            "To protect you, this video session is recorded: your picture, your voice, the "
            "chat and what the advisor is shown of your page. The recording is used to confirm "
            "your identity and your instructions, is kept as banking regulations require, and "
            "is seen only by authorised staff and auditors. Passwords and PINs you type are "
            "never recorded. If you do not agree, you can visit a branch instead."
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


def whole_years(days: int) -> int | None:
    """``days`` as a whole number of years (1826 → 5, 365 or 366 → 1), else None.

    A period of N years holds N × 365 days plus its leap days, so a count within a day of
    N × 365.25 is N years."""
    years = round(days / _DAYS_PER_YEAR)
    return years if years >= 1 and abs(days - years * _DAYS_PER_YEAR) < 1 else None


def retention_words(days: int, lang: str) -> str:
    """The retention period in ``lang``: years when it is a whole number of them, else days."""
    years = whole_years(days)
    if lang == "zh-CN":
        return f"{years}年" if years else f"{days}天"
    if years:
        return "1 year" if years == 1 else f"{years} years"
    return "1 day" if days == 1 else f"{days} days"


def consent_version(retention_days: int = DEFAULT_RETENTION_DAYS) -> str:
    """The version of the current text with this retention period."""
    if retention_days < 1:
        raise ValueError(f"retention_days must be at least 1: {retention_days}")
    return f"{CURRENT_VERSION}-{retention_days}d"


def consent_texts(retention_days: int = DEFAULT_RETENTION_DAYS) -> dict[str, str]:
    """The current text in every language, with this retention period."""
    return {
        lang: text.format(retention=retention_words(retention_days, lang))
        for lang, text in _CURRENT.items()
    }


def _all_texts(retention_days: int) -> dict[str, dict[str, str]]:
    return {**_PREVIOUS, consent_version(retention_days): consent_texts(retention_days)}


async def ensure_consent_texts(db: Database, retention_days: int = DEFAULT_RETENTION_DAYS) -> None:
    """Store every known consent text once (the stored row is what a case refers to)."""
    async with db.session() as s, s.begin():
        have = {(r.version, r.lang) for r in (await s.scalars(select(ConsentText))).all()}
        now = datetime.now(UTC)
        for version, by_lang in _all_texts(retention_days).items():
            for lang, text in by_lang.items():
                if (version, lang) not in have:
                    s.add(
                        ConsentText(
                            version=version, lang=lang, text=text, sha256=_sha(text), created_at=now
                        )
                    )


async def _stored(db: Database, version: str) -> dict[str, ConsentText]:
    async with db.session() as s:
        rows = (await s.scalars(select(ConsentText).where(ConsentText.version == version))).all()
    return {r.lang: r for r in rows}


async def current_consent(
    db: Database, lang: str, retention_days: int = DEFAULT_RETENTION_DAYS
) -> Consent:
    """The current consent text in ``lang`` (English when that language has none), stored
    first if this retention period is new (the settings changed since the start)."""
    version = consent_version(retention_days)
    by_lang = await _stored(db, version)
    if "en" not in by_lang:
        try:
            await ensure_consent_texts(db, retention_days)
        except IntegrityError:
            pass  # another request stored it at the same moment
        by_lang = await _stored(db, version)
    row = by_lang.get(lang) or by_lang["en"]
    return Consent(version=row.version, lang=row.lang, text=row.text, sha256=row.sha256)
