"""The events' JSON codec: what the log stores for each event, and back."""

from __future__ import annotations

import dataclasses

import pytest

from ledger.events.types import (
    AccountOpened,
    Event,
    PaymentReceived,
    UserDeleted,
    UserRegistered,
    UserUpdated,
    from_data,
    to_data,
)

EVENTS: list[Event] = [
    UserRegistered(7, "Ada@example.com", "Ada L", "$argon2id$v=19$...", is_admin=False, is_auditor=True),
    UserUpdated(7, 2, email="ada@example.org", password_hash="$argon2id$v=19$..."),
    UserUpdated(7, 2, is_admin=False),  # False is a change, not an absent field
    UserDeleted(7),
    AccountOpened(3, 7),
    PaymentReceived("tx-1", 7, 3, "100.50", "ab" * 32),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda event: type(event).__name__)
def test_the_data_holds_every_set_field_and_reads_back_to_the_same_event(event: Event) -> None:
    expected = {name: value for name, value in dataclasses.asdict(event).items() if value is not None}
    assert to_data(event) == expected
    assert from_data(event.type, to_data(event)) == event


def test_the_data_of_a_payment_keeps_the_amount_as_the_provider_wrote_it() -> None:
    data = to_data(PaymentReceived("tx-1", 7, 3, "100.0", "ab" * 32))
    assert data == {
        "transaction_id": "tx-1",
        "user_id": 7,
        "account_id": 3,
        "amount": "100.0",
        "signature": "ab" * 32,
    }
