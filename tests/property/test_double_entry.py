"""Double entry under random interleavings (hypothesis, stateful): payments, re-deliveries,
transfers, retried transfers, reversals and user deletions, through the real commands against
PostgreSQL. After every step: every account's balance is the sum of its postings, all balances
sum to zero, no user's account is below zero unless a reversal took it there, each account
holds what a simple model of the steps says, and a replay of the log equals the projections.
At the end: balances as of a cut equal a rebuild of the log cut there."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal

import psycopg
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ledger import commands, db, errors
from ledger.commands import NewUser, Reversal, Transfer
from ledger.config import CHEAPEST_ARGON2
from ledger.passwords import Passwords
from ledger.projections import past
from ledger.projections.past import Cut
from ledger.projections.rebuild import rebuild_at, replay
from tests.support import PASSWORD, delivery

CENTS = st.integers(1, 5000).map(lambda cents: Decimal(cents) / 100)

# Every account whose balance is not the sum of its postings; the sum of every balance; every
# user's account below zero that no reversal touched.
SELECT_OFF_POSTINGS = """
    SELECT a.id FROM accounts AS a
    WHERE a.balance <> (SELECT COALESCE(sum(p.amount), 0) FROM postings AS p WHERE p.account_id = a.id)
"""
SELECT_TOTAL = "SELECT sum(balance) FROM ledger_balances"
SELECT_NEGATIVE_WITHOUT_REVERSAL = """
    SELECT a.id FROM accounts AS a
    WHERE a.balance < 0 AND NOT EXISTS (SELECT 1 FROM reversals AS r WHERE r.account_id = a.id)
"""
SELECT_BALANCES = "SELECT id, balance FROM accounts WHERE id = ANY(%s)"
SELECT_LOG_END = "SELECT max(position), max(recorded_at) FROM events"


class DoubleEntry(RuleBasedStateMachine):
    database_url = ""  # set by the test

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.conn = self.run(psycopg.AsyncConnection.connect(self.database_url, autocommit=True))
        self.passwords = Passwords(CHEAPEST_ARGON2, jobs_max=1)
        self.users: list[int] = []
        self.live: set[int] = set()
        self.admin = 0
        self.accounts: dict[int, int] = {}  # account: owner
        self.expected: dict[int, Decimal] = {}  # account: balance, by the model
        self.payments: list[
            tuple[int, str, int, Decimal]
        ] = []  # (payment id, transaction id, account, amount)
        self.reversed: dict[int, Decimal] = {}
        self.keys: dict[str, tuple[int, Transfer, bool]] = {}  # key: (user, transfer, went through)
        self.ends: list[tuple[int, object]] = []

    def run(self, awaitable):  # noqa: ANN001, ANN201
        return self.loop.run_until_complete(awaitable)

    @initialize()
    def people(self) -> None:
        for is_admin in (True, False, False, False):
            email = f"de-{uuid.uuid4().hex[:12]}@example.com"
            user = self.run(
                commands.register(self.conn, self.passwords, NewUser(email, "P", PASSWORD, is_admin))
            )
            self.users.append(user.id)
            self.live.add(user.id)
        self.admin = self.users[0]

    @rule(owner=st.integers(1, 3), account=st.integers(0, 3), amount=CENTS)
    def pay(self, owner: int, account: int, amount: Decimal) -> None:
        user_id = self.users[owner]
        account_id = self.account_of(owner, account)
        if user_id not in self.live or self.accounts.get(account_id, user_id) != user_id:
            return
        payment = delivery(user_id, account_id, f"{amount:.2f}")
        self.run(commands.receive_payment(self.conn, payment))
        self.accounts[account_id] = user_id
        self.expected[account_id] = self.expected.get(account_id, Decimal(0)) + amount
        row = self.run(
            self.fetch("SELECT id FROM payments WHERE transaction_id = %s", payment.transaction_id)
        )
        self.payments.append((row[0], payment.transaction_id, account_id, amount))

    @precondition(lambda self: self.payments)
    @rule(which=st.integers(0, 100))
    def redeliver(self, which: int) -> None:
        _, transaction_id, account_id, amount = self.payments[which % len(self.payments)]
        owner = self.accounts[account_id]
        if owner not in self.live:
            return
        outcome = self.run(
            commands.receive_payment(self.conn, delivery(owner, account_id, f"{amount:.2f}", transaction_id))
        )
        assert not outcome.is_new

    @precondition(lambda self: len(self.accounts) >= 2)
    @rule(
        source=st.integers(0, 100),
        destination=st.integers(0, 100),
        share=st.integers(1, 120),
        key=st.integers(0, 5),
    )
    def transfer(self, source: int, destination: int, share: int, key: int) -> None:
        """Mostly from a funded account to another, a share of its balance (sometimes more than
        all of it); now and then to itself, or under a key used before."""
        accounts = sorted(self.accounts)
        funded = [a for a in accounts if self.expected[a] > 0] or accounts
        from_id, to_id = funded[source % len(funded)], accounts[destination % len(accounts)]
        user_id = self.accounts[from_id]
        amount = max(
            Decimal("0.01"), (max(self.expected[from_id], Decimal(0)) * share / 100).quantize(Decimal("0.01"))
        )
        idempotency_key = f"{self.users.index(user_id)}-{key}-{len(self.keys) if key else 0}"
        transfer = Transfer(from_id, to_id, amount)
        try:
            outcome = self.run(commands.transfer_money(self.conn, user_id, idempotency_key, transfer))
        except errors.IdempotencyConflictError:
            assert idempotency_key in self.keys and self.keys[idempotency_key][1] != transfer
            return
        except (
            errors.SameAccountError,
            errors.InsufficientFundsError,
            errors.AccountNotFoundError,
            errors.ForbiddenError,
        ) as refused:
            event(f"transfer: {type(refused).__name__}")
            assert idempotency_key not in self.keys, refused
            if isinstance(refused, errors.InsufficientFundsError):
                assert self.expected[from_id] < amount
            elif isinstance(refused, errors.SameAccountError):
                assert from_id == to_id
            elif isinstance(refused, errors.AccountNotFoundError):
                assert self.accounts[to_id] not in self.live
            else:
                assert user_id not in self.live
            return
        event("transfer: made" if outcome.is_new else "transfer: retried")
        if outcome.is_new:
            assert idempotency_key not in self.keys
            self.expected[from_id] -= amount
            self.expected[to_id] += amount
            self.keys[idempotency_key] = (user_id, transfer, True)
        else:
            assert self.keys[idempotency_key][1] == transfer

    @precondition(lambda self: self.payments)
    @rule(which=st.integers(0, 100), amount=CENTS, key=st.integers(0, 5))
    def reverse(self, which: int, amount: Decimal, key: int) -> None:
        payment_id, _, account_id, paid = self.payments[which % len(self.payments)]
        reversal = Reversal(payment_id, amount, "chargeback")
        try:
            outcome = self.run(commands.reverse_payment(self.conn, self.admin, f"r-{uuid.uuid4()}", reversal))
        except errors.ReversalExceedsPaymentError:
            assert self.reversed.get(payment_id, Decimal(0)) + amount > paid
            return
        assert outcome.is_new
        event("reversal: made")
        self.reversed[payment_id] = self.reversed.get(payment_id, Decimal(0)) + amount
        self.expected[account_id] -= amount
        assert self.reversed[payment_id] <= paid

    @rule(who=st.integers(1, 3))
    def delete(self, who: int) -> None:
        user_id = self.users[who]
        if user_id in self.live:
            self.run(commands.delete_user(self.conn, self.admin, user_id))
            self.live.discard(user_id)

    def account_of(self, owner: int, slot: int) -> int:
        return 10**15 + self.users[owner] * 10 + slot

    async def fetch(self, query: str, *params: object) -> tuple:
        row = await (await self.conn.execute(query, params)).fetchone()
        assert row is not None
        return row

    @invariant()
    def the_books_balance(self) -> None:
        assert self.run(self.fetchall(SELECT_OFF_POSTINGS)) == []
        assert self.run(self.fetch(SELECT_TOTAL)) == (0,)
        assert self.run(self.fetchall(SELECT_NEGATIVE_WITHOUT_REVERSAL)) == []
        balances = dict(self.run(self.fetchall(SELECT_BALANCES, list(self.expected))))
        assert balances == self.expected
        self.ends.append(self.run(self.fetch(SELECT_LOG_END)))

    @invariant()
    def a_replay_equals_the_projections(self) -> None:
        report = self.run(self.replayed())
        assert report.equal, report.differences

    async def replayed(self):  # noqa: ANN201
        async with await psycopg.AsyncConnection.connect(
            self.database_url, autocommit=True, prepare_threshold=None
        ) as conn:
            return await replay(conn)

    async def fetchall(self, query: str, *params: object) -> list[tuple]:
        return await (await self.conn.execute(query, params or None)).fetchall()

    def teardown(self) -> None:
        try:
            if self.users:
                self.run(self.past_equals_a_rebuild())
        finally:
            self.run(self.conn.close())
            self.loop.close()

    async def past_equals_a_rebuild(self) -> None:
        """As-of reads, by position and by time after every step, equal a rebuild cut there."""
        async with await psycopg.AsyncConnection.connect(
            self.database_url, autocommit=True, prepare_threshold=None
        ) as rebuild_conn:
            for position, time in self.ends[-4:]:
                for cut in (Cut(position=position), Cut(time=time)):  # type: ignore[arg-type]
                    as_of = await past.accounts_of_users_at(self.conn, self.users, cut)
                    rebuilt = await rebuild_at(rebuild_conn, cut)
                    assert as_of == [a for a in rebuilt.accounts if a.user_id in self.users], cut


@pytest.fixture(scope="module")
def double_entry_database(server_url: str, new_migrated_database: Callable[[str], str]) -> Iterator[str]:
    url = new_migrated_database("ledger_double_entry")
    yield url
    db.drop_database(server_url, url)


def test_the_books_balance_after_every_step(double_entry_database: str) -> None:
    DoubleEntry.database_url = double_entry_database
    run_state_machine_as_test(
        DoubleEntry,
        settings=settings(
            max_examples=8,
            stateful_step_count=15,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
