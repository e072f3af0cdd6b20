"""Event types and their JSON codec; the log itself and its appends are SQL (sql/)."""

from ledger.events.types import (
    AccountOpened,
    Event,
    PaymentReceived,
    UserDeleted,
    UserRegistered,
    UserUpdated,
)

__all__ = [
    "AccountOpened",
    "Event",
    "PaymentReceived",
    "UserDeleted",
    "UserRegistered",
    "UserUpdated",
]
