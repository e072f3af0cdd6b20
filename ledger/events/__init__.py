"""Event types and their JSON codec; the log itself and its appends are SQL (sql/)."""

from ledger.events.types import (
    AccountOpened,
    Event,
    PaymentReceived,
    PaymentReversed,
    TransferMade,
    UserDeleted,
    UserRegistered,
    UserUpdated,
)

__all__ = [
    "AccountOpened",
    "Event",
    "PaymentReceived",
    "PaymentReversed",
    "TransferMade",
    "UserDeleted",
    "UserRegistered",
    "UserUpdated",
]
