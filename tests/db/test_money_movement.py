"""Money moving under concurrency, against the real database: no overdraft, no deadlock, no
reversal beyond its payment, one movement per idempotency key; and the books balance."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import psycopg
import pytest
from psycopg import AsyncConnection
from psycopg import errors as pg_errors

from ledger import commands, errors
from ledger.audit.verify import Finding, verify
from ledger.commands import Reversal, Transfer
from ledger.passwords import Passwords
from ledger.projections.rebuild import replay
from ledger.projections.users import UserView
from tests.support import create_user, delivery, new_account_id, webhooks_for_tests

CONNECTIONS = 20


@pytest.fixture
async def connections(own_database: str) -> AsyncIterator[list[AsyncConnection]]:
    opened = [await AsyncConnection.connect(own_database, autocommit=True) for _ in range(CONNECTIONS)]
    yield opened
    for conn in opened:
        await conn.close()


async def funded_account(conn: AsyncConnection, user: UserView, amount: str) -> int:
    account_id = new_account_id()
    await commands.receive_payment(conn, delivery(user.id, account_id, amount))
    return account_id


async def balance(conn: AsyncConnection, account_id: int) -> Decimal:
    row = await (await conn.execute("SELECT balance FROM accounts WHERE id = %s", (account_id,))).fetchone()
    assert row is not None
    return row[0]


async def ledger_total(conn: AsyncConnection) -> Decimal:
    row = await (await conn.execute("SELECT sum(balance) FROM ledger_balances")).fetchone()
    assert row is not None
    return row[0]


def key() -> str:
    return f"key-{uuid.uuid4()}"


async def test_concurrent_transfers_of_the_whole_balance_let_exactly_one_through(
    connections: list[AsyncConnection], passwords: Passwords
) -> None:
    conn = connections[0]
    owner, others = await create_user(conn, passwords), [await create_user(conn, passwords) for _ in range(5)]
    source = await funded_account(conn, owner, "50.00")
    destinations = [await funded_account(conn, other, "1.00") for other in others for _ in range(10)]

    async def attempt(index: int) -> object:
        transfer = Transfer(source, destinations[index], Decimal("50.00"))
        try:
            return await commands.transfer_money(connections[index % CONNECTIONS], owner.id, key(), transfer)
        except errors.InsufficientFundsError as refused:
            return refused

    outcomes = await asyncio.gather(*(attempt(index) for index in range(50)))
    made = [o for o in outcomes if isinstance(o, commands.TransferOutcome)]
    assert len(made) == 1, outcomes
    assert sum(isinstance(o, errors.InsufficientFundsError) for o in outcomes) == 49
    assert await balance(conn, source) == 0
    assert await balance(conn, made[0].to_account_id) == Decimal("51.00")
    assert await ledger_total(conn) == 0


async def test_transfers_both_ways_at_once_never_deadlock_and_add_up(
    connections: list[AsyncConnection], passwords: Passwords
) -> None:
    conn = connections[0]
    alice, bob = await create_user(conn, passwords), await create_user(conn, passwords)
    a, b = await funded_account(conn, alice, "100.00"), await funded_account(conn, bob, "100.00")

    async def worker(index: int) -> list[Decimal]:
        moved = []
        for step in range(10):  # 200 transfers over 20 connections
            forward = (index + step) % 2 == 0
            source, destination, user = (a, b, alice) if forward else (b, a, bob)
            amount = Decimal(f"{1 + (index * 7 + step) % 5}.00")
            try:
                await commands.transfer_money(
                    connections[index], user.id, key(), Transfer(source, destination, amount)
                )
            except errors.InsufficientFundsError:
                continue
            moved.append(-amount if forward else amount)  # what a gained
        return moved

    results = await asyncio.gather(*(worker(index) for index in range(CONNECTIONS)))  # a deadlock would raise
    gained_by_a = sum((amount for moved in results for amount in moved), Decimal(0))
    assert sum(len(moved) for moved in results) > 100, "most transfers should go through"
    assert await balance(conn, a) == Decimal("100.00") + gained_by_a
    assert await balance(conn, b) == Decimal("100.00") - gained_by_a
    assert await ledger_total(conn) == 0


async def test_concurrent_reversals_of_one_payment_never_exceed_it(
    connections: list[AsyncConnection], passwords: Passwords
) -> None:
    conn = connections[0]
    admin, user = await create_user(conn, passwords, is_admin=True), await create_user(conn, passwords)
    payment = delivery(user.id, new_account_id(), "10.00")
    credited = await commands.receive_payment(conn, payment)
    payment_id = (
        await (
            await conn.execute(
                "SELECT id FROM payments WHERE transaction_id = %s", (credited.transaction_id,)
            )
        ).fetchone()
    )[0]  # type: ignore[index]

    async def attempt(index: int) -> object:
        reversal = Reversal(payment_id, Decimal("3.00"), "chargeback")
        try:
            return await commands.reverse_payment(connections[index], admin.id, key(), reversal)
        except errors.ReversalExceedsPaymentError as refused:
            return refused

    outcomes = await asyncio.gather(*(attempt(index) for index in range(CONNECTIONS)))
    assert sum(isinstance(o, commands.ReversalOutcome) for o in outcomes) == 3  # 9.00 of 10.00
    assert await balance(conn, payment.account_id) == Decimal("1.00")
    assert await ledger_total(conn) == 0


async def test_a_key_retried_while_its_first_attempt_runs_moves_money_once(
    connections: list[AsyncConnection], passwords: Passwords
) -> None:
    conn = connections[0]
    alice, bob = await create_user(conn, passwords), await create_user(conn, passwords)
    source, destination = await funded_account(conn, alice, "30.00"), await funded_account(conn, bob, "1.00")
    same_key, transfer = key(), Transfer(source, destination, Decimal("10.00"))
    outcomes = await asyncio.gather(
        *(commands.transfer_money(connections[i], alice.id, same_key, transfer) for i in range(CONNECTIONS))
    )
    assert sum(outcome.is_new for outcome in outcomes) == 1
    assert len({outcome.id for outcome in outcomes}) == 1
    assert await balance(conn, source) == Decimal("20.00")
    with pytest.raises(errors.IdempotencyConflictError):
        await commands.transfer_money(
            conn, alice.id, same_key, Transfer(source, destination, Decimal("11.00"))
        )


async def test_a_reversal_may_take_a_balance_below_zero_and_then_no_transfer_leaves(
    connections: list[AsyncConnection], passwords: Passwords, own_database: str
) -> None:
    conn = connections[0]
    admin, user, other = (
        await create_user(conn, passwords, is_admin=True),
        await create_user(conn, passwords),
        await create_user(conn, passwords),
    )
    payment = delivery(user.id, new_account_id(), "10.00")
    credited = await commands.receive_payment(conn, payment)
    destination = await funded_account(conn, other, "1.00")
    await commands.transfer_money(
        conn, user.id, key(), Transfer(payment.account_id, destination, Decimal("8.00"))
    )
    payment_id = (
        await (
            await conn.execute(
                "SELECT id FROM payments WHERE transaction_id = %s", (credited.transaction_id,)
            )
        ).fetchone()
    )[0]  # type: ignore[index]
    await commands.reverse_payment(
        conn, admin.id, key(), Reversal(payment_id, Decimal("10.00"), "chargeback")
    )
    assert await balance(conn, payment.account_id) == Decimal("-8.00")
    with pytest.raises(errors.InsufficientFundsError):
        await commands.transfer_money(
            conn, user.id, key(), Transfer(payment.account_id, destination, Decimal("0.01"))
        )
    async with await AsyncConnection.connect(own_database, autocommit=True, prepare_threshold=None) as fresh:
        report = await replay(fresh)
    assert report.equal, report.differences


def test_the_database_refuses_an_unbalanced_ledger_transaction(own_database: str) -> None:
    """Directly, as the tables' owner: the trigger, not the service, refuses it."""
    unbalanced = {
        "transfer_id": 999,
        "user_id": 1,
        "idempotency_key": "k",
        "from_account_id": 1,
        "to_account_id": 2,
        "amount": "5.00",
        "postings": [{"account_id": 1, "amount": "-5.00"}, {"account_id": 2, "amount": "4.99"}],
    }
    one_legged = {**unbalanced, "postings": [{"account_id": 1, "amount": "0.00"}]}
    without = {key: value for key, value in unbalanced.items() if key != "postings"}
    with psycopg.connect(own_database, autocommit=True) as conn:
        for data in (unbalanced, one_legged, without):
            with pytest.raises(pg_errors.CheckViolation):
                conn.execute(
                    "INSERT INTO events (stream, type, data) VALUES ('transfer-999', 'TransferMade', %s)",
                    (json.dumps(data),),
                )


def test_the_runtime_functions_refuse_what_the_service_never_sends(own_database: str) -> None:
    """The functions' own guards, called directly: an amount that is not whole cents, a key too long."""
    with psycopg.connect(own_database, autocommit=True) as conn:
        for amount, idempotency_key in (("0.001", "k"), ("-5", "k"), ("0", "k"), ("5", ""), ("5", "k" * 256)):
            with pytest.raises(pg_errors.RaiseException):
                conn.execute(
                    "SELECT * FROM transfer_money(1, %s, 1, 2, %s)", (idempotency_key, Decimal(amount))
                )
            with pytest.raises(pg_errors.RaiseException):
                conn.execute(
                    "SELECT * FROM reverse_payment(2, %s, 1, %s, 'why')", (idempotency_key, Decimal(amount))
                )


async def test_verify_and_replay_report_books_that_do_not_balance(own_database: str) -> None:
    """A log written around the database's guard (its owner lifting the trigger) and a balance
    changed behind the service's back: verify names the transaction, replay the totals."""
    unbalanced = {
        "transfer_id": 999,
        "user_id": 1,
        "idempotency_key": "k",
        "from_account_id": 1,
        "to_account_id": 1,
        "amount": "5.00",
        "postings": [{"account_id": 1, "amount": "5.00"}, {"account_id": -1, "amount": "-4.00"}],
    }
    with psycopg.connect(own_database, autocommit=True) as conn:
        conn.execute("ALTER TABLE events DISABLE TRIGGER events_balanced")
        position = conn.execute(
            "INSERT INTO events (stream, type, data) VALUES ('transfer-999', 'TransferMade', %s) "
            "RETURNING position",
            (json.dumps(unbalanced),),
        ).fetchone()[0]  # type: ignore[index]
        conn.execute("ALTER TABLE events ENABLE TRIGGER events_balanced")
        conn.execute("UPDATE accounts SET balance = balance + 3 WHERE id = 1")
    async with await AsyncConnection.connect(own_database, autocommit=True) as conn:
        report = await verify(conn, webhooks_for_tests())
    assert [f for f in report.findings if f.kind == "unbalanced"] == [
        Finding("unbalanced", position, "", "its postings do not sum to zero"),
        Finding("unbalanced", None, "", "every posting of the log sums to 1.00, not 0.00"),
    ], report.findings
    async with await AsyncConnection.connect(own_database, autocommit=True, prepare_threshold=None) as conn:
        replayed = await replay(conn)
    assert {(d.projection, d.side) for d in replayed.differences if d.projection == "ledger"} == {
        ("ledger", "the log"),
        ("ledger", "the projections"),
    }
