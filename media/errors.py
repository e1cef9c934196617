"""Exceptions of the media package; only `web/` turns them into HTTP statuses."""

from __future__ import annotations


class MediaError(Exception):
    """Base class of every error raised by the media package."""


class TooManyCalls(MediaError):
    """The server already holds ``MediaConfig.max_calls`` calls."""


class CallExists(MediaError):
    """A call with this id is already open."""


class CallClosed(MediaError):
    """The call was closed; it takes no more offers."""


class BadOffer(MediaError):
    """The SDP is malformed, is not an offer, or cannot be negotiated."""


class InvalidCallId(MediaError):
    """A call id that cannot name a recording (a public case id is ``[A-Za-z0-9_-]``)."""


class RecordingError(MediaError):
    """The recorder cannot record (for instance, aiortc's internals changed)."""
