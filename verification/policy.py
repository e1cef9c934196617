"""The decision policy: thresholds per service and embedder, reason severities, its version.

The policy is a versioned JSON file (default: ``verification/policy.json``); its ``version``
goes into every decision's evidence. Match thresholds belong to one embedder (``ModelInfo.key``)
and are on that embedder's own similarity scale, so a model change without new thresholds cannot
silently reuse old ones: :meth:`Policy.thresholds` returns ``None`` and the decision refers.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from verification.errors import VerificationError
from verification.passive import PassiveConfig

SERVICES = ("pin_change", "card_loss", "phone_change", "ukey_reset", "consultation")


class PolicyError(VerificationError, ValueError):
    """The policy file is missing, malformed or inconsistent."""


class Severity(StrEnum):
    """What a reason does to the outcome."""

    FAIL = "fail"
    REFER = "refer"
    NOTE = "note"


@dataclass(frozen=True, slots=True)
class MatchThresholds:
    """Similarity at or above ``accept`` passes; at or above ``refer`` goes to the advisor."""

    accept: float
    refer: float

    def __post_init__(self) -> None:
        if self.refer > self.accept:
            raise PolicyError(f"refer threshold {self.refer} above pass threshold {self.accept}")


@dataclass(frozen=True, slots=True)
class ModelPolicy:
    """Thresholds of one embedder.

    ``lookalike_margin``: a passing score below ``pass + lookalike_margin`` is in the band where
    the most alike strangers score, so the advisor is shown a "look-alike risk" note (0: never).
    """

    identity_min: float
    services: Mapping[str, MatchThresholds]
    lookalike_margin: float = 0.0

    def __post_init__(self) -> None:
        if not math.isfinite(self.lookalike_margin) or self.lookalike_margin < 0:
            raise PolicyError(
                f"lookalike_margin must be a number >= 0, got {self.lookalike_margin}"
            )


@dataclass(frozen=True, slots=True)
class Policy:
    """A loaded, checked policy."""

    version: str
    top_k: int
    models: Mapping[str, ModelPolicy]
    passive: PassiveConfig
    severity: Mapping[str, Severity]
    service_severity: Mapping[str, Mapping[str, Severity]] = field(default_factory=dict)

    def thresholds(self, service: str, model_key: str) -> MatchThresholds | None:
        """Match thresholds for ``service`` with embedder ``model_key`` (None if uncalibrated)."""
        self._check_service(service)
        model = self.models.get(model_key)
        return None if model is None else model.services.get(service)

    def lookalike_margin(self, model_key: str) -> float:
        """The look-alike band above the pass threshold of ``model_key`` (0 when unknown)."""
        model = self.models.get(model_key)
        return 0.0 if model is None else model.lookalike_margin

    def passive_for(self, model_key: str | None) -> PassiveConfig:
        """Passive levels, with the identity threshold of ``model_key`` when it is known."""
        model = self.models.get(model_key) if model_key else None
        if model is None:
            return self.passive
        return dataclasses.replace(self.passive, identity_min_similarity=model.identity_min)

    def severity_of(self, service: str, code: str) -> Severity:
        """How ``code`` counts for ``service``; unknown codes refer (fail safe, not silent)."""
        self._check_service(service)
        override = self.service_severity.get(service, {})
        return override.get(code) or self.severity.get(code) or Severity.REFER

    def _check_service(self, service: str) -> None:
        if service not in SERVICES:
            raise PolicyError(f"unknown service {service!r}; expected one of {SERVICES}")


def _severities(raw: Mapping[str, Any], where: str) -> Mapping[str, Severity]:
    try:
        return MappingProxyType({k: Severity(v) for k, v in raw.items()})
    except ValueError as err:
        raise PolicyError(f"bad severity in {where}: {err}") from err


def _model(key: str, raw: Mapping[str, Any]) -> ModelPolicy:
    services = {
        name: MatchThresholds(float(t["pass"]), float(t["refer"]))
        for name, t in raw["services"].items()
    }
    unknown = set(services) - set(SERVICES)
    if unknown:
        raise PolicyError(f"model {key}: unknown services {sorted(unknown)}")
    margin = raw.get("lookalike_margin", 0.0)
    if isinstance(margin, bool) or not isinstance(margin, int | float):
        raise PolicyError(f"model {key}: lookalike_margin must be a number, got {margin!r}")
    try:
        return ModelPolicy(float(raw["identity_min"]), MappingProxyType(services), float(margin))
    except PolicyError as err:
        raise PolicyError(f"model {key}: {err}") from err


def parse_policy(raw: Mapping[str, Any]) -> Policy:
    """A :class:`Policy` from the decoded JSON document."""
    try:
        services = raw["services"]
        missing = set(SERVICES) - set(services)
        if missing:
            raise PolicyError(f"policy lacks services {sorted(missing)}")
        passive = PassiveConfig(**{k: float(v) for k, v in raw["passive"].items()})
        return Policy(
            version=str(raw["version"]),
            top_k=int(raw["match"]["top_k"]),
            models=MappingProxyType({k: _model(k, v) for k, v in raw["models"].items()}),
            passive=passive,
            severity=_severities(raw["severity"], "severity"),
            service_severity=MappingProxyType(
                {n: _severities(s.get("severity", {}), n) for n, s in services.items()}
            ),
        )
    except (KeyError, TypeError) as err:
        raise PolicyError(f"malformed policy: {err!r}") from err


def load_policy(path: Path | None = None) -> Policy:
    """Read and check the policy file (the packaged ``policy.json`` by default)."""
    try:
        if path is None:
            text = resources.files("verification").joinpath("policy.json").read_text("utf-8")
        else:
            text = path.read_text("utf-8")
        raw = json.loads(text)
    except (OSError, json.JSONDecodeError) as err:
        where = path or "verification/policy.json"
        raise PolicyError(f"cannot read policy {where}: {err}") from err
    return parse_policy(raw)
