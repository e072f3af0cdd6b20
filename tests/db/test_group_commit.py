"""Group commit against PostgreSQL: deliveries recorded together (one statement, one commit) are
each answered as if they had come alone, and one that fails never fails its neighbours."""

from __future__ import annotations

import asyncio
import dataclasses
from decimal import Decimal

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from ledger import commands, errors
from ledger.commands import PaymentOutcome
from ledger.config import CHEAPEST_ARGON2
from ledger.events import PaymentReceived
from ledger.group_commit import GroupCommit
from ledger.passwords import Passwords
from ledger.projections.users import UserView
from tests.support import (
    accepted_delivery,
    balance_of,
    create_user,
    delivery,
    event_count,
    new_account_id,
    new_transaction_id,
    standard_delivery,
)


async def test_a_batch_answers_each_delivery_as_it_would_be_answered_alone(
    pool: AsyncConnectionPool, user: UserView
) -> None:
    account_id, other_account_id = new_account_id(), new_account_id()
    async with pool.connection() as conn:
        spent = delivery(user.id, other_account_id, "3.00")
        assert (await commands.receive_payment(conn, spent)).is_new
        good = delivery(user.id, account_id, "10.00")
        twice = delivery(user.id, account_id, "1.25")
        conflicting_id = new_transaction_id()
        first_of_conflict = delivery(user.id, account_id, "2.00", conflicting_id)
        second_of_conflict = delivery(user.id, account_id, "2.50", conflicting_id)
        unknown_user = delivery(10**12, new_account_id(), "4.00")
        # The evidence of a payment already credited, under another transaction id.
        recut = dataclasses.replace(spent, transaction_id=new_transaction_id())
        # A delivery that no check in front of the database would let through: its guard fails.
        broken = dataclasses.replace(delivery(user.id, account_id, "1.00"), amount="0")
        events_before = await event_count(conn)

        batch = [good, twice, first_of_conflict, unknown_user, twice, recut, second_of_conflict, broken]
        outcomes = await commands.receive_payments(conn, batch)

        (
            good_outcome,
            twice_first,
            conflict_first,
            unknown,
            twice_again,
            recut_outcome,
            conflict_second,
            bad,
        ) = outcomes
        assert isinstance(good_outcome, PaymentOutcome) and good_outcome.is_new
        assert isinstance(twice_first, PaymentOutcome) and isinstance(twice_again, PaymentOutcome)
        assert {twice_first.is_new, twice_again.is_new} == {True, False}, "one credit, one re-delivery"
        assert twice_first.amount == twice_again.amount == Decimal("1.25")
        # The first of the two deliveries of one id that the batch records wins; the other conflicts.
        conflict = [conflict_first, conflict_second]
        credited = [o for o in conflict if isinstance(o, PaymentOutcome)]
        refused = [o for o in conflict if isinstance(o, errors.TransactionConflictError)]
        assert len(credited) == 1 and credited[0].is_new and len(refused) == 1
        assert isinstance(unknown, errors.UserNotFoundError)
        assert isinstance(recut_outcome, errors.SignatureReusedError)
        assert isinstance(bad, commands.DeliveryFailedError)

        # What was recorded is exactly what the answers say: three credits, one account opened.
        assert await balance_of(conn, account_id) == Decimal("10.00") + Decimal("1.25") + credited[0].amount
        assert await balance_of(conn, other_account_id) == Decimal("3.00")
        assert await event_count(conn) == events_before + 1 + 3


async def test_fifty_concurrent_identical_deliveries_through_group_commit_credit_once(
    pool: AsyncConnectionPool, user: UserView
) -> None:
    group_commit = GroupCommit(pool, batch_max=64, in_flight_max=1)
    account_id = new_account_id()
    payment = delivery(user.id, account_id, "25.00")
    outcomes = await asyncio.gather(*(group_commit.receive(payment) for _ in range(50)))
    assert sum(outcome.is_new for outcome in outcomes) == 1
    assert {(o.account_id, o.amount, o.balance) for o in outcomes} == {
        (account_id, Decimal("25.00"), Decimal("25.00"))
    }
    assert group_commit.batches_sent < 50, "the deliveries were not recorded together"
    async with pool.connection() as conn:
        assert await balance_of(conn, account_id) == Decimal("25.00")


async def test_concurrent_deliveries_in_batches_credit_each_account_exactly(
    pool: AsyncConnectionPool, user: UserView
) -> None:
    """Many batches at once, crossing the same accounts in every order: no deadlock reaches a
    delivery, and every balance is the sum of what was answered 201."""
    group_commit = GroupCommit(pool, batch_max=16, in_flight_max=4)
    accounts = [new_account_id() for _ in range(5)]
    payments = [delivery(user.id, accounts[i % 5], f"{1 + i % 7}.01") for i in range(200)]
    outcomes = await asyncio.gather(*(group_commit.receive(p) for p in reversed(payments)))
    assert all(outcome.is_new for outcome in outcomes)
    async with pool.connection() as conn:
        for account_id in accounts:
            expected = sum((o.amount for o in outcomes if o.account_id == account_id), Decimal(0))
            assert await balance_of(conn, account_id) == expected


# Faults PostgreSQL raises rarely, made to happen in a database of the test's own: a trigger on
# payments raises the SQLSTATE for one transaction id, the first time only (a sequence counts
# the times, and no rollback takes a sequence's value back).
INJECT_FAULT = psycopg.sql.SQL("""
    CREATE SEQUENCE fault_fired;
    CREATE FUNCTION inject_fault() RETURNS trigger LANGUAGE plpgsql AS $fault$
    BEGIN
        IF NEW.transaction_id = {transaction_id} AND nextval('fault_fired') = 1 THEN
            RAISE EXCEPTION 'injected fault' USING ERRCODE = {sqlstate}, CONSTRAINT = {constraint};
        END IF;
        RETURN NEW;
    END
    $fault$;
    CREATE TRIGGER inject_fault BEFORE INSERT ON payments FOR EACH ROW EXECUTE FUNCTION inject_fault();
""")


async def batch_with_a_fault(
    database_url: str, sqlstate: str, constraint: str = ""
) -> tuple[list[PaymentOutcome | Exception], list[Decimal | None]]:
    """Receive three deliveries together, the middle one meeting the fault; return the outcomes
    and the three accounts' balances afterwards."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        user = await create_user(conn, Passwords(CHEAPEST_ARGON2))
        batch = [delivery(user.id, new_account_id(), amount) for amount in ("1.00", "2.00", "3.00")]
        await conn.execute(
            INJECT_FAULT.format(
                transaction_id=psycopg.sql.Literal(batch[1].transaction_id),
                sqlstate=psycopg.sql.Literal(sqlstate),
                constraint=psycopg.sql.Literal(constraint),
            )
        )
        outcomes = await commands.receive_payments(conn, batch)
        balances = [await balance_of(conn, payment.account_id) for payment in batch]
    return outcomes, balances


@pytest.mark.parametrize("sqlstate", sorted(commands.RETRY_ALONE))
async def test_a_delivery_that_lost_a_deadlock_or_a_lock_wait_is_received_again_alone(
    own_database: str, sqlstate: str
) -> None:
    outcomes, balances = await batch_with_a_fault(own_database, sqlstate)
    assert [(o.is_new, o.balance) for o in outcomes if isinstance(o, PaymentOutcome)] == [
        (True, Decimal("1.00")),
        (True, Decimal("2.00")),
        (True, Decimal("3.00")),
    ], outcomes
    assert balances == [Decimal("1.00"), Decimal("2.00"), Decimal("3.00")]


@pytest.mark.parametrize(
    ("sqlstate", "constraint", "refusal"),
    [
        ("22003", "", errors.BalanceLimitError),  # what numeric(20,2) raises past its largest balance
        ("23505", "payments_transaction_id_key", commands.DeliveryFailedError),  # not the delivery key
        ("23505", "delivery_keys_pkey", errors.SignatureReusedError),
        ("22012", "", commands.DeliveryFailedError),
    ],
)
async def test_a_delivery_that_fails_in_the_database_fails_alone_with_its_own_answer(
    own_database: str, sqlstate: str, constraint: str, refusal: type[Exception]
) -> None:
    (first, failed, third), balances = await batch_with_a_fault(own_database, sqlstate, constraint)
    assert type(failed) is refusal, failed
    if refusal is commands.DeliveryFailedError:
        assert str(failed) == f"receive_payment failed with SQLSTATE {sqlstate}"  # what the log says
    assert isinstance(first, PaymentOutcome) and isinstance(third, PaymentOutcome)
    assert balances == [Decimal("1.00"), None, Decimal("3.00")]


async def test_a_batch_records_its_deliveries_in_one_order_whatever_order_they_came_in(
    pool: AsyncConnectionPool, user: UserView
) -> None:
    """By account, then transaction id: two batches that share accounts lock them in the same
    order, so they wait for each other rather than deadlock."""
    first, second = sorted([new_account_id(), new_account_id()])
    came = [delivery(user.id, account, "1.00") for account in (second, first, second, first)]
    async with pool.connection() as conn:
        await commands.receive_payments(conn, came)
        cursor = await conn.execute(
            "SELECT transaction_id FROM events WHERE transaction_id = ANY(%(ids)s) ORDER BY position",
            {"ids": [d.transaction_id for d in came]},
        )
        recorded = [row[0] for row in await cursor.fetchall()]
    assert recorded == [
        d.transaction_id for d in sorted(came, key=lambda d: (d.account_id, d.transaction_id))
    ]


def standard_payment(user_id: int, webhook_id: str) -> PaymentReceived:
    """A Standard Webhooks delivery, accepted as the webhook accepts it."""
    body = {
        "transaction_id": new_transaction_id(),
        "user_id": user_id,
        "account_id": new_account_id(),
        "amount": "5.00",
    }
    raw, headers = standard_delivery(body, webhook_id=webhook_id)
    return accepted_delivery(raw, headers=headers)


async def test_a_webhook_id_used_again_is_refused_as_such_alone_and_in_a_batch(
    pool: AsyncConnectionPool, user: UserView
) -> None:
    webhook_id = f"msg_{new_transaction_id()}"
    async with pool.connection() as conn:
        assert (await commands.receive_payment(conn, standard_payment(user.id, webhook_id))).is_new
        with pytest.raises(errors.WebhookIdReusedError):
            await commands.receive_payment(conn, standard_payment(user.id, webhook_id))
        (refused,) = await commands.receive_payments(conn, [standard_payment(user.id, webhook_id)])
    assert type(refused) is errors.WebhookIdReusedError
