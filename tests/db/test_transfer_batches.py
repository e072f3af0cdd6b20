"""Transfers recorded together (ledger.group_commit, make_transfers()): each is answered as it
would be alone, a batch never overdraws nor deadlocks, and a key retried anywhere moves money
once. On a database of the module's own: the shared database's tests check that every balance
is the sum of its payments, which transfers make untrue there."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal

import psycopg
import psycopg.sql
import pytest
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from ledger import commands, db, errors
from ledger.commands import Transfer, TransferOutcome, TransferRequest
from ledger.config import CHEAPEST_ARGON2
from ledger.group_commit import GroupCommit
from ledger.passwords import Passwords
from ledger.projections.rebuild import replay
from ledger.projections.users import UserView
from tests.support import balance_of, create_user, delivery, event_count, new_account_id


@pytest.fixture(scope="module")
def database(server_url: str, new_migrated_database: Callable[[str], str]) -> AsyncIterator[str]:
    url = new_migrated_database("ledger_transfer_batches")
    yield url
    db.drop_database(server_url, url)


@pytest.fixture
async def pool(database: str) -> AsyncIterator[AsyncConnectionPool]:
    own = db.create_pool(db.serving_conninfo(database, statement_timeout_s=30), 1, 8)
    await own.open(wait=True)
    yield own
    await own.close()


def request(user: UserView, transfer: Transfer, key: str | None = None) -> TransferRequest:
    return TransferRequest(user.id, user.credentials_version, key or f"k-{uuid.uuid4()}", transfer)


async def funded_account(conn: AsyncConnection, user: UserView, amount: str) -> int:
    account_id = new_account_id()
    await commands.receive_payment(conn, delivery(user.id, account_id, amount))
    return account_id


async def books_total(conn: AsyncConnection) -> Decimal:
    row = await (await conn.execute("SELECT sum(balance) FROM ledger_balances")).fetchone()
    assert row is not None
    return row[0]


async def test_a_batch_answers_each_transfer_as_it_would_be_answered_alone(
    pool: AsyncConnectionPool, passwords: Passwords
) -> None:
    async with pool.connection() as conn:
        alice, bob, carol, gone = [await create_user(conn, passwords) for _ in range(4)]
        a, b, c = [await funded_account(conn, person, "10.00") for person in (alice, bob, carol)]
        gone_account = await funded_account(conn, gone, "10.00")
        await commands.delete_user(conn, alice.id, gone.id)
        events_before = await event_count(conn)

        good = request(alice, Transfer(a, b, Decimal("4.00")), "key-good")
        batch = [
            good,
            good,  # a retry in the same batch: the original transfer
            request(alice, Transfer(a, b, Decimal("4.01")), "key-good"),  # the key, another body
            # Bob passes on what he has just received, with what he had: the batch runs in order.
            request(bob, Transfer(b, c, Decimal("14.00"))),
            request(bob, Transfer(b, c, Decimal("0.01"))),  # nothing left
            request(alice, Transfer(b, a, Decimal("1.00"))),  # Bob's account, not hers
            request(alice, Transfer(a, new_account_id(), Decimal("1.00"))),  # no such account
            request(alice, Transfer(a, gone_account, Decimal("1.00"))),  # a deleted user's account
            request(alice, Transfer(a, a, Decimal("1.00"))),
            TransferRequest(
                carol.id, carol.credentials_version + 1, "key-old", Transfer(c, a, Decimal("1.00"))
            ),
            request(gone, Transfer(gone_account, a, Decimal("1.00"))),  # a deleted user's token
            request(carol, Transfer(c, a, Decimal("24.00"))),
        ]
        outcomes = await commands.make_transfers(conn, batch)

        made, again, conflict, passed_on, nothing_left, not_hers, unknown, deleted, same, old, ghost, last = (
            outcomes
        )
        assert isinstance(made, TransferOutcome) and made.is_new
        assert again == TransferOutcome(False, made.id, a, b, Decimal("4.00"), made.created_at)
        assert isinstance(conflict, errors.IdempotencyConflictError)
        assert isinstance(passed_on, TransferOutcome) and passed_on.is_new
        assert isinstance(nothing_left, errors.InsufficientFundsError)
        assert isinstance(not_hers, errors.ForbiddenError)
        assert isinstance(unknown, errors.AccountNotFoundError)
        assert isinstance(deleted, errors.AccountNotFoundError)
        assert isinstance(same, errors.SameAccountError)
        assert isinstance(old, errors.UnauthenticatedError) and old.message == "The token was revoked."
        assert isinstance(ghost, errors.UnauthenticatedError)
        assert isinstance(last, TransferOutcome) and last.is_new
        assert (await balance_of(conn, a), await balance_of(conn, b), await balance_of(conn, c)) == (
            Decimal("30.00"),
            Decimal("0.00"),
            Decimal("0.00"),
        )
        assert await event_count(conn) == events_before + 3  # the three transfers made
        assert await books_total(conn) == 0


async def test_a_batch_of_one_is_answered_as_a_transfer_alone(
    pool: AsyncConnectionPool, passwords: Passwords
) -> None:
    async with pool.connection() as conn:
        alice, bob = await create_user(conn, passwords), await create_user(conn, passwords)
        a, b = await funded_account(conn, alice, "2.00"), await funded_account(conn, bob, "2.00")
        (made,) = await commands.make_transfers(conn, [request(alice, Transfer(a, b, Decimal("2.00")))])
        (refused,) = await commands.make_transfers(conn, [request(alice, Transfer(a, b, Decimal("0.01")))])
        (revoked,) = await commands.make_transfers(
            conn, [TransferRequest(bob.id, bob.credentials_version + 1, "k", Transfer(b, a, Decimal("1.00")))]
        )
        assert isinstance(made, TransferOutcome) and made.is_new
        assert isinstance(refused, errors.InsufficientFundsError)
        assert isinstance(revoked, errors.UnauthenticatedError)
        assert await balance_of(conn, b) == Decimal("4.00")


async def test_a_transfer_that_fails_in_the_database_fails_alone(
    pool: AsyncConnectionPool, passwords: Passwords
) -> None:
    async with pool.connection() as conn:
        alice, bob = await create_user(conn, passwords), await create_user(conn, passwords)
        a, b = await funded_account(conn, alice, "5.00"), await funded_account(conn, bob, "5.00")
        events_before = await event_count(conn)
        # An amount no check in front of the database lets through: transfer_money()'s guard fails.
        broken = request(alice, Transfer(a, b, Decimal("0.001")))
        before, failed, after = await commands.make_transfers(
            conn,
            [
                request(alice, Transfer(a, b, Decimal("1.00"))),
                broken,
                request(bob, Transfer(b, a, Decimal("2.00"))),
            ],
        )
        assert isinstance(before, TransferOutcome) and before.is_new
        assert isinstance(failed, commands.DeliveryFailedError) and "SQLSTATE P0001" in str(failed)
        assert isinstance(after, TransferOutcome) and after.is_new
        assert (await balance_of(conn, a), await balance_of(conn, b)) == (Decimal("6.00"), Decimal("4.00"))
        assert await event_count(conn) == events_before + 2


# A fault a transfer meets in the database: raised with that SQLSTATE by the first `times` of its
# attempts (a sequence counts them: no rollback takes its value back). A batch's first attempt is
# the whole batch in one subtransaction, its second the transfer in a subtransaction of its own.
INJECT_FAULT = psycopg.sql.SQL("""
    CREATE SEQUENCE fault_fired;
    CREATE FUNCTION inject_fault() RETURNS trigger LANGUAGE plpgsql AS $fault$
    BEGIN
        IF NEW.idempotency_key = {key} AND nextval('fault_fired') <= {times} THEN
            RAISE EXCEPTION 'injected fault' USING ERRCODE = {sqlstate};
        END IF;
        RETURN NEW;
    END
    $fault$;
    CREATE TRIGGER inject_fault BEFORE INSERT ON transfers FOR EACH ROW EXECUTE FUNCTION inject_fault();
""")


async def batch_with_a_fault(
    database_url: str, sqlstate: str, times: int
) -> tuple[list[TransferOutcome | Exception], list[Decimal | None]]:
    """Make three transfers together, the middle one meeting the fault; return the outcomes and
    the three destinations' balances afterwards."""
    async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
        passwords = Passwords(CHEAPEST_ARGON2)
        alice, bob = await create_user(conn, passwords), await create_user(conn, passwords)
        source = await funded_account(conn, alice, "10.00")
        destinations = [await funded_account(conn, bob, "1.00") for _ in range(3)]
        batch = [
            request(alice, Transfer(source, d, Decimal(f"{n}.00"))) for n, d in enumerate(destinations, 1)
        ]
        await conn.execute(
            INJECT_FAULT.format(
                key=psycopg.sql.Literal(batch[1].idempotency_key),
                times=psycopg.sql.Literal(times),
                sqlstate=psycopg.sql.Literal(sqlstate),
            )
        )
        outcomes = await commands.make_transfers(conn, batch)
        balances = [await balance_of(conn, d) for d in destinations]
    return outcomes, balances


@pytest.mark.parametrize("sqlstate", sorted(commands.RETRY_ALONE))
async def test_a_transfer_that_lost_a_lock_is_made_again_alone_once(own_database: str, sqlstate: str) -> None:
    # Lost in the batch, and in its own subtransaction: made alone, it goes through.
    outcomes, balances = await batch_with_a_fault(own_database, sqlstate, times=2)
    assert all(isinstance(o, TransferOutcome) and o.is_new for o in outcomes), outcomes
    assert balances == [Decimal("2.00"), Decimal("3.00"), Decimal("4.00")]


async def test_a_transfer_that_lost_a_lock_again_alone_is_answered_with_that_error(own_database: str) -> None:
    (first, failed, third), balances = await batch_with_a_fault(own_database, "40P01", times=4)
    assert isinstance(failed, psycopg.errors.DeadlockDetected)  # a 503: the client sends it again
    assert "SQLSTATE 40P01" in str(failed)  # what the log says of it
    assert isinstance(first, TransferOutcome) and isinstance(third, TransferOutcome)
    assert balances == [Decimal("2.00"), Decimal("1.00"), Decimal("4.00")]


@pytest.mark.parametrize(
    ("sqlstate", "refusal"),
    [("22003", errors.BalanceLimitError), ("22012", commands.DeliveryFailedError)],
)
async def test_a_transfer_that_fails_in_the_database_gets_its_own_answer(
    own_database: str, sqlstate: str, refusal: type[Exception]
) -> None:
    (first, failed, third), balances = await batch_with_a_fault(own_database, sqlstate, times=2)
    assert type(failed) is refusal, failed
    assert isinstance(first, TransferOutcome) and isinstance(third, TransferOutcome)
    assert balances == [Decimal("2.00"), Decimal("1.00"), Decimal("4.00")]


def group_commit(pool: AsyncConnectionPool) -> GroupCommit[TransferRequest, TransferOutcome]:
    # Small batches, several in the database at once: batches meet on the same accounts.
    return GroupCommit(pool, batch_max=8, in_flight_max=4, record=commands.make_transfers)


async def test_concurrent_whole_balance_transfers_in_batches_let_exactly_one_through(
    pool: AsyncConnectionPool, passwords: Passwords
) -> None:
    async with pool.connection() as conn:
        owner, other = await create_user(conn, passwords), await create_user(conn, passwords)
        source = await funded_account(conn, owner, "50.00")
        destinations = [await funded_account(conn, other, "1.00") for _ in range(50)]
    transfers = group_commit(pool)
    outcomes = await asyncio.gather(
        *(transfers.receive(request(owner, Transfer(source, d, Decimal("50.00")))) for d in destinations),
        return_exceptions=True,
    )
    assert sum(isinstance(o, TransferOutcome) for o in outcomes) == 1, outcomes
    assert sum(isinstance(o, errors.InsufficientFundsError) for o in outcomes) == 49, outcomes
    assert transfers.batches_sent < 50  # they were recorded together
    async with pool.connection() as conn:
        assert await balance_of(conn, source) == 0
        assert await books_total(conn) == 0


async def deadlocks(conn: AsyncConnection) -> int:
    row = await (
        await conn.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
    ).fetchone()
    assert row is not None
    return row[0]


async def test_batches_meeting_on_the_same_accounts_both_ways_never_deadlock_and_add_up(
    pool: AsyncConnectionPool, passwords: Passwords, database: str
) -> None:
    async with pool.connection() as conn:
        people = [await create_user(conn, passwords) for _ in range(6)]
        accounts = [
            (person, await funded_account(conn, person, "20.00")) for person in people for _ in range(2)
        ]
        total_before = sum([await balance_of(conn, account) for _, account in accounts], Decimal(0))
    async with await AsyncConnection.connect(database, autocommit=True) as watcher:
        deadlocks_before = await deadlocks(watcher)
    rng = random.Random(7)
    moves = []
    for _ in range(400):
        (owner, source), (_, destination) = rng.sample(accounts, 2)
        moves.append(
            request(owner, Transfer(source, destination, Decimal(f"{rng.randint(1, 800)}.00") / 100))
        )
    transfers = group_commit(pool)
    outcomes = await asyncio.gather(*(transfers.receive(move) for move in moves), return_exceptions=True)

    refused = [o for o in outcomes if not isinstance(o, (TransferOutcome, errors.InsufficientFundsError))]
    assert refused == []  # no deadlock, nor anything else, reaches a client
    expected = {account: Decimal(0) for _, account in accounts}
    for move, outcome in zip(moves, outcomes, strict=True):
        if isinstance(outcome, TransferOutcome):
            expected[move.transfer.from_account_id] -= move.transfer.amount
            expected[move.transfer.to_account_id] += move.transfer.amount
    assert sum(isinstance(o, TransferOutcome) for o in outcomes) > 200
    async with pool.connection() as conn:
        for _, account in accounts:
            assert await balance_of(conn, account) == Decimal("20.00") + expected[account]
        assert sum([await balance_of(conn, account) for _, account in accounts], Decimal(0)) == total_before
        assert await books_total(conn) == 0
    await pool.close()  # each backend reports what it counted as it ends
    async with await AsyncConnection.connect(database, autocommit=True, prepare_threshold=None) as watcher:
        for _ in range(50):
            still = await watcher.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            if (await still.fetchone()) == (0,):
                break
            await asyncio.sleep(0.1)
        assert await deadlocks(watcher) == deadlocks_before  # the batches took their locks in one order
        report = await replay(watcher)
    assert report.equal, report.differences


async def test_a_key_retried_in_many_batches_at_once_moves_money_once(
    pool: AsyncConnectionPool, passwords: Passwords
) -> None:
    async with pool.connection() as conn:
        alice, bob = await create_user(conn, passwords), await create_user(conn, passwords)
        a, b = await funded_account(conn, alice, "30.00"), await funded_account(conn, bob, "1.00")
    same = request(alice, Transfer(a, b, Decimal("10.00")), "the-same-key")
    transfers = group_commit(pool)
    outcomes = await asyncio.gather(*(transfers.receive(same) for _ in range(40)))
    assert sum(outcome.is_new for outcome in outcomes) == 1
    assert len({outcome.id for outcome in outcomes}) == 1
    async with pool.connection() as conn:
        assert await balance_of(conn, a) == Decimal("20.00")
