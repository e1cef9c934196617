"""Errors raised by the banking package."""

from __future__ import annotations


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


class CustomerNotFound(BankingError, LookupError):
    """No customer has this id."""

    def __init__(self, customer_id: int) -> None:
        super().__init__(f"customer not found: {customer_id}")
        self.customer_id = customer_id
