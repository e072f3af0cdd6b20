"""The database's own guards, called directly: what the service checks first, the database
checks again, so that a bug in the second check is seen although the first one hides it.

Each test calls the SQL as the tables' owner (the session's superuser), never through the
service's Python, so a refusal seen here is the function's, trigger's or constraint's own.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb

from ledger import db
from tests.support import delivery_body, new_account_id, new_email, new_transaction_id

RECEIVE_PAYMENT = """
    SELECT outcome, balance FROM receive_payment(%(transaction_id)s, %(user_id)s, %(account_id)s,
                                                 %(amount)s, %(delivery)s)
"""
LARGEST_AMOUNT = Decimal("1000000000000")
# Never verified here: no one logs in as these users.
WELL_FORMED_ARGON2_HASH = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2g"


def receive(
    conn: psycopg.Connection, delivery: dict[str, Any], amount: Decimal | None = None
) -> tuple[str, Any]:
    """Call receive_payment() for a delivery as the service records it (amount: its text)."""
    row = conn.execute(
        RECEIVE_PAYMENT,
        {
            "transaction_id": delivery["transaction_id"],
            "user_id": delivery["user_id"],
            "account_id": delivery["account_id"],
            "amount": Decimal(delivery["amount"]) if amount is None else amount,
            "delivery": Jsonb(delivery),
        },
    ).fetchone()
    assert row is not None
    return row


def recorded(user_id: int, account_id: int, amount: str) -> dict[str, Any]:
    """A contract-scheme delivery as the log records it: the amount as the text sent."""
    return {**delivery_body(user_id, account_id, amount), "amount": amount}


@pytest.fixture(scope="module")
def guarded_database(server_url: str, new_migrated_database: Callable[[str], str]) -> Iterator[str]:
    """A database of this module's own: the shared one's tests check that every balance is the
    sum of its payments, which the transfers and reversals here would make untrue there."""
    url = new_migrated_database("ledger_guards")
    yield url
    db.drop_database(server_url, url)


@pytest.fixture
def owner(guarded_database: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(guarded_database, autocommit=True) as conn:
        yield conn


@pytest.fixture
def user_id(owner: psycopg.Connection) -> int:
    """A new user, registered directly (register_user() only checks that the hash is argon2's)."""
    row = owner.execute(
        "SELECT register_user(%s, 'Guarded', %s, false, false)", (new_email(), WELL_FORMED_ARGON2_HASH)
    ).fetchone()
    assert row is not None
    return row[0]


# receive_payment(): the amount rules and the delivery it records --------------------------------


@pytest.mark.parametrize("amount", ["0", "-0.01", "0.001", "1000000000000.01"])
def test_receive_payment_refuses_an_amount_the_service_never_sends(
    owner: psycopg.Connection, user_id: int, amount: str
) -> None:
    account_id = new_account_id()
    with pytest.raises(pg_errors.RaiseException, match="amount"):
        receive(owner, recorded(user_id, account_id, amount))
    assert owner.execute("SELECT count(*) FROM accounts WHERE id = %s", (account_id,)).fetchone() == (0,)


@pytest.mark.parametrize("amount", ["0.01", "1000000000000"])
def test_receive_payment_credits_the_smallest_and_the_largest_amounts(
    owner: psycopg.Connection, user_id: int, amount: str
) -> None:
    assert receive(owner, recorded(user_id, new_account_id(), amount)) == ("credited", Decimal(amount))


@pytest.mark.parametrize("field", ["transaction_id", "user_id", "account_id", "amount"])
def test_receive_payment_refuses_to_record_one_delivery_and_credit_another(
    owner: psycopg.Connection, user_id: int, field: str
) -> None:
    delivery = recorded(user_id, new_account_id(), "7.50")
    credited = {**delivery, field: {"transaction_id": new_transaction_id(), "amount": "75.00"}.get(field, 1)}
    with pytest.raises(pg_errors.RaiseException, match="not the payment credited"):
        owner.execute(
            RECEIVE_PAYMENT,
            {
                "transaction_id": credited["transaction_id"],
                "user_id": credited["user_id"],
                "account_id": credited["account_id"],
                "amount": Decimal(credited["amount"]),
                "delivery": Jsonb(delivery),
            },
        )


def test_receive_payment_refuses_a_standard_webhooks_body_that_names_another_amount(
    owner: psycopg.Connection, user_id: int
) -> None:
    account_id = new_account_id()
    transaction_id = new_transaction_id()
    fields = {"transaction_id": transaction_id, "user_id": user_id, "account_id": account_id}
    delivery = {
        **fields,
        "amount": "5.00",
        "webhook_id": f"msg_{transaction_id}",
        "webhook_timestamp": "1700000000",
        "webhook_signature": "v1,c2lnbmF0dXJl",
        "body": json.dumps({**fields, "amount": 500}),
    }
    with pytest.raises(pg_errors.RaiseException, match="signed body"):
        receive(owner, delivery)


def test_a_signature_is_spent_whatever_the_case_of_its_hex(owner: psycopg.Connection, user_id: int) -> None:
    """Hex reads the same in either case: the same signature under another transaction id (a
    re-cut delivery) is the same key, already spent."""
    first = recorded(user_id, new_account_id(), "3.00")
    assert receive(owner, first)[0] == "credited"
    recut = {**first, "transaction_id": new_transaction_id(), "signature": first["signature"].upper()}
    with pytest.raises(pg_errors.UniqueViolation):
        receive(owner, recut)


# transfer_money() and reverse_payment() --------------------------------------------------------


def funded_account(conn: psycopg.Connection, user_id: int, amount: str) -> tuple[int, int]:
    """Return a new account of the user's, credited with amount, and the payment's id."""
    delivery = recorded(user_id, new_account_id(), amount)
    assert receive(conn, delivery)[0] == "credited"
    payment = conn.execute(
        "SELECT id FROM payments WHERE transaction_id = %s", (delivery["transaction_id"],)
    ).fetchone()
    assert payment is not None
    return delivery["account_id"], payment[0]


def test_a_transfer_or_reversal_above_the_largest_amount_is_refused(
    owner: psycopg.Connection, user_id: int
) -> None:
    account_id, payment_id = funded_account(owner, user_id, "1.00")
    too_much = LARGEST_AMOUNT + Decimal("0.01")
    with pytest.raises(pg_errors.RaiseException):
        owner.execute("SELECT * FROM transfer_money(%s, 'k', %s, 1, %s)", (user_id, account_id, too_much))
    with pytest.raises(pg_errors.RaiseException):
        owner.execute("SELECT * FROM reverse_payment(2, 'k', %s, %s, 'why')", (payment_id, too_much))


def test_a_reversal_without_a_reason_is_refused(owner: psycopg.Connection, user_id: int) -> None:
    _, payment_id = funded_account(owner, user_id, "1.00")
    with pytest.raises(pg_errors.RaiseException):
        owner.execute("SELECT * FROM reverse_payment(2, 'k', %s, 1.00, NULL)", (payment_id,))


def test_a_transfer_takes_the_whole_balance_and_not_a_cent_more(
    owner: psycopg.Connection, user_id: int
) -> None:
    source, _ = funded_account(owner, user_id, "5.00")
    destination, _ = funded_account(owner, user_id, "1.00")
    transfer = "SELECT outcome FROM transfer_money(%s, %s, %s, %s, %s)"
    refused = owner.execute(transfer, (user_id, new_transaction_id(), source, destination, Decimal("5.01")))
    assert refused.fetchone() == ("insufficient_funds",)
    taken = owner.execute(transfer, (user_id, new_transaction_id(), source, destination, Decimal("5.00")))
    assert taken.fetchone() == ("created",)
    balances = owner.execute(
        "SELECT id, balance FROM accounts WHERE id IN (%s, %s) ORDER BY id", (source, destination)
    ).fetchall()
    assert dict(balances) == {source: Decimal("0.00"), destination: Decimal("6.00")}


def test_a_transfer_to_a_deleted_users_account_finds_no_account(
    owner: psycopg.Connection, user_id: int
) -> None:
    source, _ = funded_account(owner, user_id, "5.00")
    registered = owner.execute(
        "SELECT register_user(%s, 'Gone', %s, false, false)", (new_email(), WELL_FORMED_ARGON2_HASH)
    ).fetchone()
    assert registered is not None
    other = new_account_id()
    assert receive(owner, recorded(registered[0], other, "1.00"))[0] == "credited"
    assert owner.execute("SELECT delete_user(%s)", (registered[0],)).fetchone() == ("deleted",)
    outcome = owner.execute(
        "SELECT outcome FROM transfer_money(%s, %s, %s, %s, 1.00)",
        (user_id, new_transaction_id(), source, other),
    ).fetchone()
    assert outcome == ("account_not_found",)


def test_a_payment_reversed_in_full_and_not_a_cent_more(owner: psycopg.Connection, user_id: int) -> None:
    account_id, payment_id = funded_account(owner, user_id, "8.00")
    reverse = "SELECT outcome FROM reverse_payment(2, %s, %s, %s, 'refund')"
    assert owner.execute(reverse, (new_transaction_id(), payment_id, Decimal("8.00"))).fetchone() == (
        "created",
    )
    assert owner.execute(reverse, (new_transaction_id(), payment_id, Decimal("0.01"))).fetchone() == (
        "reversal_exceeds_payment",
    )
    assert owner.execute("SELECT balance FROM accounts WHERE id = %s", (account_id,)).fetchone() == (
        Decimal("0.00"),
    )


# The event log's triggers and the users' constraint ---------------------------------------------


def test_the_database_refuses_a_balanced_transaction_with_a_zero_leg(owner: psycopg.Connection) -> None:
    postings = [
        {"account_id": 1, "amount": "-5.00"},
        {"account_id": 2, "amount": "5.00"},
        {"account_id": 3, "amount": "0.00"},
    ]
    data = {"transfer_id": 998, "user_id": 1, "idempotency_key": "k", "amount": "5.00", "postings": postings}
    with pytest.raises(pg_errors.CheckViolation):
        owner.execute(
            "INSERT INTO events (stream, type, data) VALUES ('transfer-998', 'TransferMade', %s)",
            (json.dumps(data),),
        )


def test_any_event_that_lists_postings_must_balance_whatever_its_type(owner: psycopg.Connection) -> None:
    """A movement of a kind to come (an adjustment, a fee) is held to the same rule the day it
    lists its postings: the rule reads the postings, not the event's type."""
    postings = [{"account_id": 1, "amount": "-5.00"}, {"account_id": 2, "amount": "4.99"}]
    with pytest.raises(pg_errors.CheckViolation):
        owner.execute(
            "INSERT INTO events (stream, type, data) VALUES ('adjustment-1', 'AdjustmentMade', %s)",
            (json.dumps({"postings": postings}),),
        )


def test_events_appended_directly_are_chained_as_the_readme_says(owner: psycopg.Connection) -> None:
    """The chain an auditor recomputes from an export alone: SHA-256 over the previous hash and
    the SHA-256 of type, stream, version and data joined by U+001F."""
    appended = [("UserDeleted", {"user_id": 7}), ("UserUpdated", {"user_id": 7, "full_name": "Seven"})] * 2
    for event_type, data in appended:
        owner.execute(
            "INSERT INTO events (stream, type, data) VALUES ('user-guard-7', %s, %s)",
            (event_type, json.dumps(data)),
        )
    rows = owner.execute(
        "SELECT type, stream, stream_version, data::text, hash FROM events "
        "WHERE stream = 'user-guard-7' ORDER BY position"
    ).fetchall()
    head = owner.execute("SELECT version, hash FROM stream_heads WHERE stream = 'user-guard-7'").fetchone()
    previous = b""
    for number, (event_type, stream, version, data, stored) in enumerate(rows, start=1):
        assert version == number
        content = "\x1f".join((event_type, stream, str(version), data)).encode()
        previous = hashlib.sha256(previous + hashlib.sha256(content).digest()).digest()
        assert bytes(stored) == previous, f"version {version}"
    assert head == (len(appended), previous)


def test_the_database_refuses_a_password_in_clear(owner: psycopg.Connection) -> None:
    with pytest.raises(pg_errors.RaiseException, match="argon2"):
        owner.execute("SELECT register_user(%s, 'Clear', 'hunter2', false, false)", (new_email(),))


def test_the_database_refuses_a_user_both_admin_and_auditor(owner: psycopg.Connection, user_id: int) -> None:
    with pytest.raises(pg_errors.CheckViolation):
        owner.execute("UPDATE users SET is_admin = true, is_auditor = true WHERE id = %s", (user_id,))
    assert owner.execute("SELECT is_admin, is_auditor FROM users WHERE id = %s", (user_id,)).fetchone() == (
        False,
        False,
    )
