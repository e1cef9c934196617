"""Checking a browser's SDP offer before it reaches aiortc (which would fail in odd ways)."""

from __future__ import annotations

from aiortc import sdp

from media.errors import BadOffer

MAX_OFFER_BYTES = 128 * 1024
# aiortc's SDP parser signals malformed lines with assert, a bare KeyError or IndexError …
_PARSE_ERRORS = (AssertionError, ValueError, KeyError, IndexError, TypeError, AttributeError)


def parse_offer(text: str) -> sdp.SessionDescription:
    """Parse ``text`` as an SDP offer with audio/video; raise :class:`BadOffer` otherwise."""
    if not isinstance(text, str) or not text.startswith("v=0"):
        raise BadOffer("not an SDP document")
    if len(text.encode()) > MAX_OFFER_BYTES:
        raise BadOffer(f"SDP larger than {MAX_OFFER_BYTES} bytes")
    try:
        description = sdp.SessionDescription.parse(text)
    except _PARSE_ERRORS as err:
        raise BadOffer(f"malformed SDP: {err}") from err
    _check_media(description)
    return description


def _check_media(description: sdp.SessionDescription) -> None:
    av_media = [media for media in description.media if media.kind in ("audio", "video")]
    if not av_media:
        raise BadOffer("the offer has no audio or video section")
    for media in description.media:
        if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
            raise BadOffer(f"{media.kind} section lacks ICE credentials")
        if not media.dtls or not media.dtls.fingerprints:
            raise BadOffer(f"{media.kind} section lacks a DTLS fingerprint")
        if media.dtls.role != "auto":  # an offer says a=setup:actpass; an answer does not
            raise BadOffer("not an offer (a=setup is not actpass)")
    for media in av_media:
        if not media.rtcp_mux:
            raise BadOffer(f"{media.kind} section does not use rtcp-mux")
