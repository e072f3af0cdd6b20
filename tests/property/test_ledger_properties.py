"""Random sequences of registrations, payments (with duplicate and conflicting re-deliveries),
user updates and deletions, driven through the commands against PostgreSQL.

After each sequence: every balance equals the sum of its PaymentReceived events (and what a
simple model of the sequence expects), no transaction_id is credited twice, and a replay of
the whole log finds the projections equal to a rebuild.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

import psycopg
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ledger import commands, errors
from ledger.commands import NewUser, UserChanges
from ledger.passwords import Passwords
from ledger.projections.rebuild import replay
from tests.support import PASSWORD, delivery

USER_SLOTS = 4
ACCOUNT_SLOTS = 5
TRANSACTION_SLOTS = 8  # few, so that re-deliveries and conflicts come up often


@dataclass(frozen=True)
class Register:
    """Register a user under an email slot: taken while that slot's user lives."""

    slot: int
    email_slot: int


@dataclass(frozen=True)
class Pay:
    user_slot: int
    account_slot: int
    cents: int
    transaction_slot: int


@dataclass(frozen=True)
class Update:
    slot: int
    email_slot: int | None
    full_name: str | None
    new_password: bool


@dataclass(frozen=True)
class Delete:
    slot: int


operations = st.lists(
    st.one_of(
        st.builds(Register, st.integers(0, USER_SLOTS - 1), st.integers(0, USER_SLOTS)),
        st.builds(
            Pay,
            st.integers(0, USER_SLOTS - 1),
            st.integers(0, ACCOUNT_SLOTS - 1),
            st.one_of(st.integers(1, 100_000), st.sampled_from([1, 10, 99, 100_000_000_000_000])),
            st.integers(0, TRANSACTION_SLOTS - 1),
        ),
        st.builds(
            Update,
            st.integers(0, USER_SLOTS - 1),
            st.none() | st.integers(0, USER_SLOTS),
            st.none()
            | st.text(min_size=1, max_size=20).filter(lambda name: name.strip() and name.isprintable()),
            st.booleans(),
        ),
        st.builds(Delete, st.integers(0, USER_SLOTS - 1)),
    ),
    max_size=30,
)

CHECKS = """
    SELECT a.id, a.balance, COALESCE(sum((e.data->>'amount')::numeric), 0), count(e.position)
    FROM accounts AS a
    LEFT JOIN events AS e
        ON e.type = 'PaymentReceived' AND (e.data->>'account_id')::bigint = a.id
    GROUP BY a.id, a.balance
"""
DUPLICATE_CREDITS = """
    SELECT transaction_id FROM events WHERE type = 'PaymentReceived'
    GROUP BY transaction_id HAVING count(*) > 1
    UNION ALL
    SELECT transaction_id FROM payments GROUP BY transaction_id HAVING count(*) > 1
"""
PAYMENTS_WITHOUT_EVENTS = """
    SELECT p.id FROM payments AS p
    LEFT JOIN events AS e ON e.position = p.id AND e.type = 'PaymentReceived'
    WHERE e.position IS NULL
"""


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequence=operations)
async def test_balances_always_equal_the_sum_of_their_events(
    sequence: list, database_url: str, passwords: Passwords
) -> None:
    run = uuid.uuid4().hex[:10]  # this example's own emails, accounts and transaction ids
    account_base = 10**15 + (uuid.uuid4().int % 10**12) * 100
    user_ids: dict[int, int] = {}
    admin_id = 2  # the seeded admin acts for deletions
    credited: dict[int, Decimal] = defaultdict(Decimal)  # the model: account -> expected balance
    sent: dict[int, tuple[int, int, Decimal]] = {}  # transaction slot -> first accepted delivery

    def email(slot: int) -> str:
        return f"p-{run}-{slot}@example.com"

    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        # Every slot starts with a user, so that most payments have someone to go to.
        for slot in range(USER_SLOTS):
            user_ids[slot] = (
                await commands.register(conn, passwords, NewUser(email(slot), "P", PASSWORD))
            ).id
        for op in sequence:
            try:
                match op:
                    case Register(slot, email_slot):
                        user = await commands.register(
                            conn, passwords, NewUser(email(email_slot), "P", PASSWORD)
                        )
                        user_ids[slot] = user.id  # the slot now names the newer user
                    case Pay(user_slot, account_slot, cents, transaction_slot):
                        amount = Decimal(cents) / 100
                        account_id = account_base + account_slot
                        payment = delivery(
                            user_ids[user_slot], account_id, str(amount), f"{run}-{transaction_slot}"
                        )
                        outcome = await commands.receive_payment(conn, payment)
                        if outcome.is_new:
                            assert transaction_slot not in sent
                            sent[transaction_slot] = (user_ids[user_slot], account_id, amount)
                            credited[account_id] += amount
                        else:
                            assert sent[transaction_slot] == (user_ids[user_slot], account_id, amount)
                    case Update(slot, email_slot, full_name, new_password):
                        changes = UserChanges(
                            email=email(email_slot) if email_slot is not None else None,
                            full_name=full_name,
                            password="another password" if new_password else None,
                        )
                        if changes != UserChanges():
                            await commands.update_user(conn, passwords, user_ids[slot], changes)
                    case Delete(slot):
                        await commands.delete_user(conn, admin_id, user_ids[slot])
            except (  # refusals the rules allow; the checks below show they changed nothing
                errors.EmailTakenError,
                errors.UserNotFoundError,
                errors.AccountOwnerMismatchError,
                errors.TransactionConflictError,
            ):
                pass
        event(f"payments credited: {min(len(sent), 5)}{'+' if len(sent) >= 5 else ''}")

        rows = await (await conn.execute(CHECKS)).fetchall()
        for account_id, balance, events_sum, _count in rows:
            assert balance == events_sum, f"account {account_id}: balance {balance} != events {events_sum}"
        balances = {account_id: balance for account_id, balance, _, _ in rows}
        for account_id, expected in credited.items():
            assert balances[account_id] == expected
        assert await (await conn.execute(DUPLICATE_CREDITS)).fetchall() == []
        assert await (await conn.execute(PAYMENTS_WITHOUT_EVENTS)).fetchall() == []

    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, prepare_threshold=None
    ) as conn:
        report = await replay(conn)
    assert report.equal, report.differences
