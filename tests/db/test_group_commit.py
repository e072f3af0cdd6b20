"""Group commit against PostgreSQL: deliveries recorded together (one statement, one commit) are
each answered as if they had come alone, and one that fails never fails its neighbours."""

from __future__ import annotations

import asyncio
import dataclasses
from decimal import Decimal

from psycopg_pool import AsyncConnectionPool

from ledger import commands, errors
from ledger.commands import PaymentOutcome
from ledger.group_commit import GroupCommit
from ledger.projections.users import UserView
from tests.support import balance_of, delivery, event_count, new_account_id, new_transaction_id


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
