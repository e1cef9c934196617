"""The services a customer can ask for."""

from __future__ import annotations

from cases.errors import UnknownService

# Order is the order the customer sees them in.
SERVICES: tuple[str, ...] = (
    "pin_change",
    "card_loss",
    "phone_change",
    "ukey_reset",
    "consultation",
)


def check_service(code: str) -> str:
    """Return ``code`` when it names a service, else raise :class:`UnknownService`."""
    if code not in SERVICES:
        raise UnknownService(f"unknown service {code!r}")
    return code
