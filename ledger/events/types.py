"""Event types: immutable facts in the past tense, and their JSON codec.

An event's `data` is what the log stores; `stream` names the user or account it belongs to.
Nothing here knows about the database or HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar


def user_stream(user_id: int) -> str:
    return f"user-{user_id}"


def account_stream(account_id: int) -> str:
    return f"account-{account_id}"


@dataclass(frozen=True)
class UserRegistered:
    """A user came to be, by registration, by an admin, or by the seed migration."""

    type: ClassVar[str] = "UserRegistered"
    user_id: int
    email: str
    full_name: str
    password_hash: str
    is_admin: bool
    is_auditor: bool = False  # absent from registrations recorded before the auditor role

    @property
    def stream(self) -> str:
        return user_stream(self.user_id)


@dataclass(frozen=True)
class UserUpdated:
    """Some fields of a user changed; None means unchanged.

    credentials_version is the user's version after the change: it grows when the password or
    the email changes, which revokes the tokens issued before.
    """

    type: ClassVar[str] = "UserUpdated"
    user_id: int
    credentials_version: int
    email: str | None = None
    full_name: str | None = None
    password_hash: str | None = None
    is_admin: bool | None = None
    is_auditor: bool | None = None  # granting and revoking the auditor role

    @property
    def stream(self) -> str:
        return user_stream(self.user_id)


@dataclass(frozen=True)
class UserDeleted:
    type: ClassVar[str] = "UserDeleted"
    user_id: int

    @property
    def stream(self) -> str:
        return user_stream(self.user_id)


@dataclass(frozen=True)
class AccountOpened:
    """An account was opened for a user (by the first payment to it, or the seed)."""

    type: ClassVar[str] = "AccountOpened"
    account_id: int
    user_id: int

    @property
    def stream(self) -> str:
        return account_stream(self.account_id)


@dataclass(frozen=True)
class PaymentReceived:
    """A signed webhook delivery, kept as it was received, with the evidence of its scheme.

    amount is the text the provider sent ("100", "100.0", "100.50"), so that its signature
    can be checked again later; amount_value is its exact value. The contract's scheme signs
    the fields and sends `signature`; Standard Webhooks signs the raw body, kept in `body`
    with the three headers that sign it.
    """

    type: ClassVar[str] = "PaymentReceived"
    transaction_id: str
    user_id: int
    account_id: int
    amount: str
    signature: str | None = None
    webhook_id: str | None = None
    webhook_timestamp: str | None = None
    webhook_signature: str | None = None
    body: str | None = None

    @property
    def stream(self) -> str:
        return account_stream(self.account_id)

    @property
    def amount_value(self) -> Decimal:
        return Decimal(self.amount)

    @property
    def is_standard_webhook(self) -> bool:
        return self.webhook_id is not None


@dataclass(frozen=True)
class TransferMade:
    """Money moved from one user's account to another's, as one of them asked (user_id).

    amount is written with two decimals ("10.00"); postings lists the two legs
    ({"account_id", "amount"}: the source's negative), which sum to zero.
    """

    type: ClassVar[str] = "TransferMade"
    transfer_id: int
    user_id: int
    idempotency_key: str
    from_account_id: int
    to_account_id: int
    amount: str
    postings: list[dict[str, Any]]

    @property
    def stream(self) -> str:
        return f"transfer-{self.transfer_id}"


@dataclass(frozen=True)
class PaymentReversed:
    """All or part of a received payment taken back (a refund, a chargeback), as an admin
    (user_id) decided: the user's account debited, the provider's clearing account credited."""

    type: ClassVar[str] = "PaymentReversed"
    reversal_id: int
    payment_id: int
    transaction_id: str  # the payment's
    user_id: int
    idempotency_key: str
    account_id: int
    amount: str
    reason: str
    postings: list[dict[str, Any]]

    @property
    def stream(self) -> str:
        return f"reversal-{self.reversal_id}"


Event = (
    UserRegistered
    | UserUpdated
    | UserDeleted
    | AccountOpened
    | PaymentReceived
    | TransferMade
    | PaymentReversed
)

EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (
        UserRegistered,
        UserUpdated,
        UserDeleted,
        AccountOpened,
        PaymentReceived,
        TransferMade,
        PaymentReversed,
    )
}


def to_data(event: Event) -> dict[str, Any]:
    """Return the JSON object the log stores for event (unchanged fields left out).

    Every field holds a str, an int, a bool, None or (postings) a list of small dicts, so the
    instance's own dict is the data
    (dataclasses.asdict would deep-copy each of those immutable values, on every delivery).
    """
    return {name: value for name, value in vars(event).items() if value is not None}


def from_data(type_name: str, data: dict[str, Any]) -> Event:
    """Return the event of that type with that data; raise KeyError for an unknown type."""
    return EVENT_TYPES[type_name](**data)
