"""Errors raised by the banking package.

Refusals of the four services are ``OperationRefused`` subclasses: each has a machine ``code``
(stable, for ``web/`` to translate), a message for logs and staff, the ``field`` the customer should
correct (or None) and a small ``detail`` dict (``reason``, ``tries_left`` …). No message or detail
ever repeats a secret or an ID, card or phone number.
"""

from __future__ import annotations

GRANT_REFUSAL_REASONS = frozenset(
    {"no_grant", "expired", "used", "revoked", "wrong_case", "wrong_customer", "wrong_service"}
)
PIN_WEAK_REASONS = frozenset({"same_digits", "sequence", "birth_date", "id_number", "last_pin"})
PASSWORD_WEAK_REASONS = frozenset({"length", "classes", "charset", "equals_pin"})


class BankingError(Exception):
    """Base class of every banking error."""


class InvalidCustomerData(BankingError, ValueError):
    """A field of a customer record is missing or malformed.

    ``field`` names the offending field (``"id_number"``, ``"photo"`` …) so that callers can point
    at it; the message never repeats the value, which may be an ID or card number.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"invalid {field}: {reason}")
        self.field = field
        self.reason = reason


class DuplicateCustomer(BankingError):
    """A customer with this ID number already exists."""

    def __init__(self) -> None:
        super().__init__("a customer with this ID number already exists")


class OperationRefused(BankingError):
    """A banking operation was refused; the bank's records are unchanged."""

    def __init__(self, code: str, message: str, field: str | None = None, **detail: object):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.detail: dict[str, object] = detail


class CustomerNotFound(OperationRefused, LookupError):
    """No customer has this id."""

    def __init__(self, customer_id: int) -> None:
        super().__init__("customer_not_found", f"customer not found: {customer_id}")
        self.customer_id = customer_id


class GrantRefused(OperationRefused):
    """No valid grant for this case, customer and service; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        if reason not in GRANT_REFUSAL_REASONS:
            raise ValueError(f"unknown grant refusal reason {reason!r}")
        super().__init__("grant_refused", f"no valid authorisation: {reason}", reason=reason)
        self.reason = reason
        self.grant_id: int | None = None  # the row the presented id names, if any (for audit)


class Mismatch(OperationRefused):
    """The confirmation differs from the secret it should repeat."""

    def __init__(self) -> None:
        super().__init__("mismatch", "the two entries differ", field="confirm")


class PinFormat(OperationRefused):
    """A PIN is not exactly six digits."""

    def __init__(self) -> None:
        super().__init__("pin_format", "the PIN must be exactly 6 digits", field="pin")


class PinWeak(OperationRefused):
    """A PIN is easy to guess; ``reason`` is one of ``PIN_WEAK_REASONS``."""

    def __init__(self, reason: str) -> None:
        if reason not in PIN_WEAK_REASONS:
            raise ValueError(f"unknown weak-PIN reason {reason!r}")
        message = f"the PIN is too easy to guess ({reason})"
        super().__init__("pin_weak", message, "pin", reason=reason)
        self.reason = reason


class PasswordWeak(OperationRefused):
    """A U-key password breaks the policy; ``reason`` is one of ``PASSWORD_WEAK_REASONS``."""

    def __init__(self, reason: str) -> None:
        if reason not in PASSWORD_WEAK_REASONS:
            raise ValueError(f"unknown weak-password reason {reason!r}")
        message = f"the password does not meet the policy ({reason})"
        super().__init__("password_weak", message, "password", reason=reason)
        self.reason = reason


class PhoneInvalid(OperationRefused):
    """The new phone number is not one an SMS can reach."""

    def __init__(self) -> None:
        message = "the phone number must be a mainland mobile number or + and 6 to 15 digits"
        super().__init__("phone_invalid", message, field="new_phone")


class PhoneSame(OperationRefused):
    """The new phone number is the one already on file."""

    def __init__(self) -> None:
        super().__init__("phone_same", "this number is already on file", field="new_phone")


class OtpWrong(OperationRefused):
    """The one-time code is wrong; ``tries_left`` more may be typed."""

    def __init__(self, tries_left: int) -> None:
        message = f"wrong code, {tries_left} tries left"
        super().__init__("otp_wrong", message, field="code", tries_left=tries_left)
        self.tries_left = tries_left


class OtpFailed(OperationRefused):
    """Too many wrong codes: the code is dead and the grant revoked (verify again)."""

    def __init__(self) -> None:
        super().__init__("otp_failed", "too many wrong codes; the change is cancelled")


class OtpLimit(OperationRefused):
    """Enough codes were sent: for this grant, or to this number in the last day."""

    def __init__(self, per: str) -> None:
        message = (
            "enough codes were sent for this change; verify again for a new one"
            if per == "grant"
            else "enough codes were sent to this number today; try again tomorrow"
        )
        super().__init__("otp_limit", message, field="new_phone", per=per)
        self.per = per


class OtpExpired(OperationRefused):
    """The one-time code has expired (start again for a new one)."""

    def __init__(self) -> None:
        super().__init__("otp_expired", "the code has expired; ask for a new one")


class NoOtp(OperationRefused):
    """No code is pending for this case (the change was not started, or is already done)."""

    def __init__(self) -> None:
        super().__init__("no_otp", "no code is pending for this change")


class NoCard(OperationRefused):
    """The customer has no card whose PIN could be set (every card is reported lost)."""

    def __init__(self) -> None:
        super().__init__("no_card", "the customer has no usable card")


class NoLostCard(OperationRefused):
    """No lost card is waiting for a replacement."""

    def __init__(self) -> None:
        super().__init__("no_lost_card", "no lost card to replace")


class NoUkey(OperationRefused):
    """The customer has no U-key."""

    def __init__(self) -> None:
        super().__init__("no_ukey", "the customer has no U-key")
