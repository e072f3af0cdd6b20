"""receive_payment against PostgreSQL: credited once whatever the concurrency, exact to the cent,
and a refused delivery leaves no trace."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from ledger import commands, db, errors
from ledger.commands import PaymentOutcome
from ledger.events import PaymentReceived
from ledger.passwords import Passwords
from ledger.projections.users import UserView
from tests.support import (
    balance_of,
    create_user,
    delivery,
    event_count,
    new_account_id,
    new_transaction_id,
    sum_of_payment_events,
)


async def receive(pool: AsyncConnectionPool, payment: PaymentReceived) -> PaymentOutcome:
    async with pool.connection() as conn:
        return await commands.receive_payment(conn, payment)


async def test_a_first_delivery_opens_the_account_and_credits_it(
    pool: AsyncConnectionPool, user: UserView
) -> None:
    account_id = new_account_id()
    outcome = await receive(pool, delivery(user.id, account_id, "100.50"))
    assert outcome.is_new
    assert (outcome.account_id, outcome.amount, outcome.balance) == (
        account_id,
        Decimal("100.50"),
        Decimal("100.50"),
    )
    async with pool.connection() as conn:
        assert await balance_of(conn, account_id) == Decimal("100.50")
        cursor = await conn.execute(
            "SELECT type FROM events WHERE stream = %(stream)s ORDER BY position",
            {"stream": f"account-{account_id}"},
        )
        assert [row[0] for row in await cursor.fetchall()] == ["AccountOpened", "PaymentReceived"]


async def test_fifty_concurrent_identical_deliveries_credit_once(
    pool: AsyncConnectionPool, user: UserView
) -> None:
    account_id = new_account_id()
    payment = delivery(user.id, account_id, "25.00")
    outcomes = await asyncio.gather(*(receive(pool, payment) for _ in range(50)))
    assert sum(outcome.is_new for outcome in outcomes) == 1
    # Every re-delivery got the original answer.
    assert {(o.account_id, o.amount, o.balance) for o in outcomes} == {
        (account_id, Decimal("25.00"), Decimal("25.00"))
    }
    async with pool.connection() as conn:
        assert await balance_of(conn, account_id) == Decimal("25.00")
        assert await sum_of_payment_events(conn, account_id) == (Decimal("25.00"), 1)


async def test_two_hundred_payments_over_twenty_connections_sum_exactly(
    pool: AsyncConnectionPool, user: UserView
) -> None:
    account_id = new_account_id()
    amounts = [Decimal(f"{1 + i % 97}.{i % 100:02d}") for i in range(200)]
    payments = [delivery(user.id, account_id, str(amount)) for amount in amounts]

    async def sender(share: list[PaymentReceived]) -> None:
        async with pool.connection() as conn:  # one connection per sender: 20 in all
            for payment in share:
                assert (await commands.receive_payment(conn, payment)).is_new

    await asyncio.gather(*(sender(payments[i::20]) for i in range(20)))
    async with pool.connection() as conn:
        assert await balance_of(conn, account_id) == sum(amounts)
        assert await sum_of_payment_events(conn, account_id) == (sum(amounts), 200)


async def test_ten_payments_of_ten_cents_make_exactly_one(pool: AsyncConnectionPool, user: UserView) -> None:
    account_id = new_account_id()
    for _ in range(10):
        await receive(pool, delivery(user.id, account_id, 0.10))
    async with pool.connection() as conn:
        balance = await balance_of(conn, account_id)
    assert balance == Decimal("1.00")
    assert str(balance) == "1.00"


async def test_a_redelivery_gets_the_original_answer_after_later_payments(
    pool: AsyncConnectionPool, user: UserView
) -> None:
    account_id = new_account_id()
    first = delivery(user.id, account_id, "10.00")
    await receive(pool, first)
    await receive(pool, delivery(user.id, account_id, "5.00"))
    again = await receive(pool, first)
    assert not again.is_new
    assert again.balance == Decimal("10.00")


async def test_refused_deliveries_leave_no_trace_and_keep_their_transaction_id(
    pool: AsyncConnectionPool, passwords: Passwords
) -> None:
    async with pool.connection() as conn:
        owner = await create_user(conn, passwords)
        other = await create_user(conn, passwords)
        deleted = await create_user(conn, passwords)
        await commands.delete_user(conn, owner.id, deleted.id)
    owned_account = new_account_id()
    await receive(pool, delivery(owner.id, owned_account, "1.00"))
    transaction_id = new_transaction_id()
    fresh_account = new_account_id()

    async with pool.connection() as conn:
        events_before = await event_count(conn)
    refusals = [
        (delivery(other.id, owned_account, "3.00", transaction_id), errors.AccountOwnerMismatchError),
        (delivery(deleted.id, fresh_account, "3.00", transaction_id), errors.UserNotFoundError),
        (delivery(2**62, fresh_account, "3.00", transaction_id), errors.UserNotFoundError),
    ]
    for payment, error in refusals:
        with pytest.raises(error):
            await receive(pool, payment)
    async with pool.connection() as conn:
        assert await event_count(conn) == events_before
        assert await balance_of(conn, owned_account) == Decimal("1.00")
        assert await balance_of(conn, fresh_account) is None

    # The transaction_id was not used up: a correct delivery with it is credited.
    outcome = await receive(pool, delivery(other.id, fresh_account, "3.00", transaction_id))
    assert outcome.is_new and outcome.balance == Decimal("3.00")


async def test_a_conflicting_redelivery_is_refused_naming_the_fields(
    pool: AsyncConnectionPool, passwords: Passwords, user: UserView
) -> None:
    async with pool.connection() as conn:
        other = await create_user(conn, passwords)
    account_id = new_account_id()
    transaction_id = new_transaction_id()
    await receive(pool, delivery(user.id, account_id, "7.00", transaction_id))
    async with pool.connection() as conn:
        events_before = await event_count(conn)

    with pytest.raises(errors.TransactionConflictError) as refused:
        await receive(pool, delivery(user.id, account_id, "7.01", transaction_id))
    assert refused.value.details == {"fields": ["amount"]}
    with pytest.raises(errors.TransactionConflictError) as refused:
        await receive(pool, delivery(other.id, new_account_id(), "7.00", transaction_id))
    assert refused.value.details == {"fields": ["user_id", "account_id"]}
    assert refused.value.message == "This transaction_id was already used with another user_id, account_id."
    # The same amount written another way is the same delivery.
    assert not (await receive(pool, delivery(user.id, account_id, "7", transaction_id))).is_new

    async with pool.connection() as conn:
        assert await event_count(conn) == events_before
        assert await balance_of(conn, account_id) == Decimal("7.00")


async def test_a_delivery_takes_one_round_trip(database_url: str, tmp_path: Path, user: UserView) -> None:
    """libpq's protocol trace shows what went over the wire: one Sync, one statement."""
    trace_path = tmp_path / "libpq.trace"
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        with trace_path.open("w") as trace:
            conn.pgconn.trace(trace.fileno())
            conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
            outcome = await commands.receive_payment(conn, delivery(user.id, new_account_id(), "1.00"))
            conn.pgconn.untrace()
    assert outcome.is_new
    sent = [
        line.split("\t")[2].split(" ")[0]
        for line in trace_path.read_text().splitlines()
        if line.startswith("F\t")
    ]
    assert sent.count("Sync") == 1, sent  # one round trip: the client waits for an answer once
    assert sent.count("Parse") <= 1 and sent.count("Execute") == 1, sent


async def test_a_payment_past_the_largest_balance_is_refused_and_changes_nothing(own_database: str) -> None:
    async with await psycopg.AsyncConnection.connect(own_database, autocommit=True) as conn:
        # Bring the seeded account to the edge of numeric(20,2), as 10^6 top payments would.
        await conn.execute("UPDATE accounts SET balance = 999999999999999999.00 WHERE id = 1")
        events_before = await event_count(conn)
        with pytest.raises(errors.BalanceLimitError):
            await commands.receive_payment(conn, delivery(1, 1, "1.00"))
        assert await event_count(conn) == events_before
        assert await balance_of(conn, 1) == Decimal("999999999999999999.00")


async def test_a_pooled_connection_keeps_one_cursor_that_outlives_a_refused_delivery(
    own_database: str,
) -> None:
    """receive_payment reuses the pooled connection's cursor (db.PooledConnection): a delivery
    refused with an error on it leaves it fit for the next, which is credited exactly."""
    pool = db.create_pool(own_database, 1, 1)  # one connection: every delivery shares it
    await pool.open(wait=True)
    try:
        async with db.connection(pool) as conn:
            assert isinstance(conn, db.PooledConnection)
            kept = db.statement_cursor(conn)
            await conn.execute("UPDATE accounts SET balance = 999999999999999999.00 WHERE id = 1")
            with pytest.raises(errors.BalanceLimitError):
                await commands.receive_payment(conn, delivery(1, 1, "1.00"))
        other_account = new_account_id()
        payment = delivery(1, other_account, "2.50")
        async with db.connection(pool) as conn:
            first = await commands.receive_payment(conn, payment)
            again = await commands.receive_payment(conn, payment)
            assert db.statement_cursor(conn) is kept
            assert await balance_of(conn, other_account) == Decimal("2.50")
            assert await balance_of(conn, 1) == Decimal("999999999999999999.00")
        assert (first.is_new, first.balance) == (True, Decimal("2.50"))
        assert (again.is_new, again.balance) == (False, Decimal("2.50"))
    finally:
        await pool.close()
