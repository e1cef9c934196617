"""Message catalogues (zh-CN, en) and language negotiation for the pages and their scripts.

The catalogues are flat JSON objects ``{key: text}`` in ``web/i18n/<lang>.json``; texts use
``str.format`` placeholders (``{position}``). A template never fails on a missing key or a missing
placeholder value: it falls back to English, then to the key itself, and logs a warning once.
"""

from __future__ import annotations

import json
import logging
import string
from collections.abc import Callable, Iterable, Mapping
from importlib import resources
from typing import Any

logger = logging.getLogger(__name__)

SUPPORTED: tuple[str, ...] = ("zh-CN", "en")
FALLBACK = "en"
# Keys the browser scripts may look up; sent in the page's ``cb-config`` as ``messages``.
SCRIPT_PREFIXES: tuple[str, ...] = ("js.", "error.", "service.", "verify.")
# Of those, the ones only staff pages get: the reasons of a verification and the advisor's
# words about it (a customer's page never holds why a check failed, not even unused).
STAFF_ONLY_PREFIXES: tuple[str, ...] = ("verify.reason.", "verify.staff.")

_ALIASES: dict[str, str] = {
    "zh": "zh-CN",
    "zh-cn": "zh-CN",
    "zh-hans": "zh-CN",
    "zh-hans-cn": "zh-CN",
    "zh-sg": "zh-CN",
    "en": "en",
}


def normalize(tag: str | None) -> str | None:
    """Map one language tag to a supported language, or ``None``."""
    if not tag:
        return None
    tag = tag.strip().replace("_", "-").lower()
    if tag in _ALIASES:
        return _ALIASES[tag]
    if tag.startswith("en-"):
        return "en"
    return None


def parse_accept_language(header: str) -> list[tuple[str, float]]:
    """The ``(tag, q)`` pairs of an Accept-Language header, best first; q=0 and junk dropped."""
    items: list[tuple[int, str, float]] = []
    for index, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                continue
        if tag and 0 < q <= 1:
            items.append((index, tag.strip(), q))
    items.sort(key=lambda item: (-item[2], item[0]))
    return [(tag, q) for _, tag, q in items]


def negotiate(accept_language: str | None, cookie: str | None, default: str) -> str:
    """Choose the page language: the cookie if supported, then Accept-Language, then default."""
    chosen = normalize(cookie)
    if chosen is not None:
        return chosen
    for tag, _ in parse_accept_language(accept_language or "")[:16]:
        if tag == "*":
            break
        chosen = normalize(tag)
        if chosen is not None:
            return chosen
    return normalize(default) or SUPPORTED[0]


def placeholders(text: str) -> frozenset[str]:
    """The named ``{placeholders}`` of a catalogue text."""
    names = {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}
    return frozenset(names)


class _Keep(dict[str, Any]):
    """``format_map`` mapping that leaves unknown placeholders as they are."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _format(text: str, fmt: Mapping[str, Any]) -> str:
    if not fmt:
        return text
    try:
        return text.format_map(_Keep(fmt))
    except (ValueError, IndexError, AttributeError, KeyError):
        return text


def _load(lang: str) -> dict[str, str]:
    source = resources.files("web").joinpath("i18n", f"{lang}.json")
    data = json.loads(source.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ValueError(f"catalogue {lang}.json must be a flat object of strings")
    return data


class Catalog:
    """The loaded catalogues of every supported language."""

    def __init__(self, languages: Iterable[str] = SUPPORTED) -> None:
        self._texts: dict[str, dict[str, str]] = {lang: _load(lang) for lang in languages}
        self._warned: set[tuple[str, str]] = set()

    @property
    def languages(self) -> tuple[str, ...]:
        """The languages loaded, in order."""
        return tuple(self._texts)

    def keys(self, lang: str) -> frozenset[str]:
        """Every key of one catalogue."""
        return frozenset(self._texts.get(lang, {}))

    def has(self, lang: str, key: str) -> bool:
        """Whether ``key`` exists in ``lang`` (no fallback)."""
        return key in self._texts.get(lang, {})

    def translate(self, lang: str, key: str, **fmt: Any) -> str:
        """The text of ``key`` in ``lang`` (else English, else the key), formatted with ``fmt``."""
        text = self._texts.get(lang, {}).get(key)
        if text is None:
            self._warn_once(lang, key)
            text = self._texts.get(FALLBACK, {}).get(key, key)
        return _format(text, fmt)

    def translator(self, lang: str) -> Callable[..., str]:
        """``t(key, **fmt)`` bound to one language, for the template context."""

        def t(key: str, **fmt: Any) -> str:
            return self.translate(lang, key, **fmt)

        return t

    def for_scripts(self, lang: str, *, staff: bool = False) -> dict[str, str]:
        """The texts the browser scripts use (keys under :data:`SCRIPT_PREFIXES`); those
        under :data:`STAFF_ONLY_PREFIXES` only for a staff page."""
        merged = {**self._texts.get(FALLBACK, {}), **self._texts.get(lang, {})}
        return {
            k: v
            for k, v in sorted(merged.items())
            if k.startswith(SCRIPT_PREFIXES) and (staff or not k.startswith(STAFF_ONLY_PREFIXES))
        }

    def _warn_once(self, lang: str, key: str) -> None:
        if (lang, key) not in self._warned:
            self._warned.add((lang, key))
            logger.warning("missing translation %s for %s", key, lang)
