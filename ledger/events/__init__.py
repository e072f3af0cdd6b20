"""Event types, their JSON codec, and the append-only store."""

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
