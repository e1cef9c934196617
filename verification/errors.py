"""Errors of the face engine. Only ``web/`` turns them into HTTP statuses or messages."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class VerificationError(Exception):
    """Base of every error raised by ``verification``."""


class BadImage(VerificationError):
    """The bytes are not a decodable JPEG/PNG image (or the array is not an RGB image)."""


class NoFace(VerificationError):
    """No face was found where exactly one was required."""

    def __init__(self, message: str = "no face found in the image") -> None:
        super().__init__(message)


class MultipleFaces(VerificationError):
    """More than one face was found where exactly one was required."""

    def __init__(self, count: int) -> None:
        super().__init__(f"{count} faces found in the image, exactly one is required")
        self.count = count


class PoorQuality(VerificationError):
    """The face is there but not good enough; ``issues`` are ``QualityIssue`` values."""

    def __init__(self, issues: Sequence[object]) -> None:
        self.issues = tuple(issues)
        names = ", ".join(str(getattr(i, "value", i)) for i in self.issues)
        super().__init__(f"image quality too poor: {names}")


class ModelLoadError(VerificationError):
    """A model file is missing or cannot be loaded; the message names the path."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"cannot load model {path}: {reason}")
        self.path = Path(path)


class ReferenceMissing(VerificationError):
    """The customer has no reference template (photo on file) to compare against."""


class TemplateMismatch(VerificationError):
    """A template was made by another model than the engine's embedder (re-enrol the photo)."""

    def __init__(self, template_key: str, engine_key: str) -> None:
        super().__init__(f"template made by {template_key}, engine embeds with {engine_key}")
        self.template_key = template_key
        self.engine_key = engine_key


class BadTemplate(VerificationError):
    """Stored template bytes cannot be read."""
