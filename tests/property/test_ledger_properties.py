"""Random sequences of registrations, payments (with duplicate and conflicting re-deliveries,
alone and in batches recorded together, as group commit records them), user updates and
deletions, driven through the commands against PostgreSQL.

After each sequence: every balance equals the sum of its PaymentReceived events (and what a
simple model of the sequence expects), no transaction_id is credited twice, and a replay of
the whole log finds the projections equal to a rebuild.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ledger import commands, db, errors
from ledger.commands import NewUser, UserChanges
from ledger.passwords import Passwords
from ledger.projections import past
from ledger.projections.past import Cut
from ledger.projections.rebuild import rebuild_at, replay
from ledger.projections.users import UserView
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
class PayTogether:
    """Payments recorded in one batch (commands.receive_payments), as group commit sends them."""

    payments: tuple[Pay, ...]


@dataclass(frozen=True)
class Update:
    slot: int
    email_slot: int | None
    full_name: str | None
    new_password: bool


@dataclass(frozen=True)
class Delete:
    slot: int


@dataclass(frozen=True)
class Grant:
    """Grant (or revoke) the auditor role."""

    slot: int
    is_auditor: bool


pay = st.builds(
    Pay,
    st.integers(0, USER_SLOTS - 1),
    st.integers(0, ACCOUNT_SLOTS - 1),
    st.one_of(st.integers(1, 100_000), st.sampled_from([1, 10, 99, 100_000_000_000_000])),
    st.integers(0, TRANSACTION_SLOTS - 1),
)
operation = st.one_of(
    st.builds(Register, st.integers(0, USER_SLOTS - 1), st.integers(0, USER_SLOTS)),
    pay,
    st.builds(PayTogether, st.lists(pay, min_size=2, max_size=6).map(tuple)),
    st.builds(
        Update,
        st.integers(0, USER_SLOTS - 1),
        st.none() | st.integers(0, USER_SLOTS),
        st.none() | st.text(min_size=1, max_size=20).filter(lambda name: name.strip() and name.isprintable()),
        st.booleans(),
    ),
    st.builds(Delete, st.integers(0, USER_SLOTS - 1)),
)
operations = st.lists(operation, max_size=30)
grants = st.builds(Grant, st.integers(0, USER_SLOTS - 1), st.booleans())

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


@dataclass
class Run:
    """What a sequence did: the model the checks compare with."""

    user_ids: dict[int, int]  # slot -> the user it names now
    every_user_id: set[int]
    credited: dict[int, Decimal]  # account -> expected balance
    sent: dict[int, tuple[int, int, Decimal]]  # transaction slot -> (user, account, amount) credited


async def run_sequence(
    conn: psycopg.AsyncConnection,
    passwords: Passwords,
    sequence: list,
    after_each: Callable[[], Awaitable[None]],
) -> Run:
    """Drive the sequence through the commands; after_each runs after every operation."""
    tag = uuid.uuid4().hex[:10]  # this example's own emails, accounts and transaction ids
    account_base = 10**15 + (uuid.uuid4().int % 10**12) * 100
    admin_id = 2  # the seeded admin acts for deletions
    run = Run({}, set(), defaultdict(Decimal), {})

    def email(slot: int) -> str:
        return f"p-{tag}-{slot}@example.com"

    def sent_as(paid: Pay) -> tuple[int, int, str, str]:
        """The delivery a Pay sends: user, account, amount and transaction id."""
        amount = Decimal(paid.cents) / 100
        return (
            run.user_ids[paid.user_slot],
            account_base + paid.account_slot,
            str(amount),
            f"{tag}-{paid.transaction_slot}",
        )

    # Every slot starts with a user, so that most payments have someone to go to.
    for slot in range(USER_SLOTS):
        run.user_ids[slot] = (
            await commands.register(conn, passwords, NewUser(email(slot), "P", PASSWORD))
        ).id
        run.every_user_id.add(run.user_ids[slot])
    for op in sequence:
        try:
            match op:
                case Register(slot, email_slot):
                    user = await commands.register(conn, passwords, NewUser(email(email_slot), "P", PASSWORD))
                    run.user_ids[slot] = user.id  # the slot now names the newer user
                    run.every_user_id.add(user.id)
                case Pay() as paid:
                    payment = delivery(*sent_as(paid))
                    outcome = await commands.receive_payment_or_refusal(conn, payment)
                    note_outcomes(run, [(payment.user_id, paid, outcome)])
                case PayTogether(payments):
                    batch = [delivery(*sent_as(paid)) for paid in payments]
                    outcomes = await commands.receive_payments(conn, batch)
                    users_paid = [payment.user_id for payment in batch]
                    note_outcomes(run, list(zip(users_paid, payments, outcomes, strict=True)))
                case Update(slot, email_slot, full_name, new_password):
                    changes = UserChanges(
                        email=email(email_slot) if email_slot is not None else None,
                        full_name=full_name,
                        password="another password" if new_password else None,
                    )
                    if changes != UserChanges():
                        await commands.update_user(conn, passwords, run.user_ids[slot], changes)
                case Grant(slot, is_auditor):
                    await commands.update_user(
                        conn, passwords, run.user_ids[slot], UserChanges(is_auditor=is_auditor)
                    )
                case Delete(slot):
                    await commands.delete_user(conn, admin_id, run.user_ids[slot])
        except (  # refusals the rules allow; the checks show they changed nothing
            errors.EmailTakenError,
            errors.UserNotFoundError,
            errors.AccountOwnerMismatchError,
            errors.TransactionConflictError,
        ):
            pass
        await after_each()
    return run


# The refusals the rules allow a payment; the checks show that they changed nothing.
PAYMENT_REFUSALS = (
    errors.UserNotFoundError,
    errors.AccountOwnerMismatchError,
    errors.TransactionConflictError,
)


def note_outcomes(run: Run, outcomes: list[tuple[int, Pay, commands.PaymentOutcome | Exception]]) -> None:
    """Add the payments credited (each with the user it was sent for) to the model, then check
    every re-delivery against it: in a batch, the credit of a transaction id may come after its
    re-delivery in the list."""
    for user_id, paid, outcome in outcomes:
        if isinstance(outcome, Exception):
            if not isinstance(outcome, PAYMENT_REFUSALS):
                raise outcome
        elif outcome.is_new:
            assert paid.transaction_slot not in run.sent
            run.sent[paid.transaction_slot] = (user_id, outcome.account_id, outcome.amount)
            run.credited[outcome.account_id] += outcome.amount
    for user_id, paid, outcome in outcomes:
        if isinstance(outcome, commands.PaymentOutcome) and not outcome.is_new:
            assert run.sent[paid.transaction_slot] == (user_id, outcome.account_id, Decimal(paid.cents) / 100)


async def nothing() -> None:
    pass


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequence=operations)
async def test_balances_always_equal_the_sum_of_their_events(
    sequence: list, database_url: str, passwords: Passwords
) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        run = await run_sequence(conn, passwords, sequence, nothing)
        event(f"payments credited: {min(len(run.sent), 5)}{'+' if len(run.sent) >= 5 else ''}")

        rows = await (await conn.execute(CHECKS)).fetchall()
        for account_id, balance, events_sum, _count in rows:
            assert balance == events_sum, f"account {account_id}: balance {balance} != events {events_sum}"
        balances = {account_id: balance for account_id, balance, _, _ in rows}
        for account_id, expected in run.credited.items():
            assert balances[account_id] == expected
        assert await (await conn.execute(DUPLICATE_CREDITS)).fetchall() == []
        assert await (await conn.execute(PAYMENTS_WITHOUT_EVENTS)).fetchall() == []

    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, prepare_threshold=None
    ) as conn:
        report = await replay(conn)
    assert report.equal, report.differences


SELECT_LOG_END = "SELECT max(position), max(recorded_at) FROM events"


@pytest.fixture(scope="module")
def as_of_database(server_url: str, new_migrated_database: Callable[[str], str]) -> Iterator[str]:
    """A database of this test's own: each example rebuilds the whole log, so keep it short."""
    url = new_migrated_database("ledger_as_of")
    yield url
    db.drop_database(server_url, url)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequence=st.lists(operation | grants, min_size=1, max_size=15), data=st.data())
async def test_balances_as_of_a_cut_equal_a_replay_of_the_log_cut_there(
    sequence: list, data: st.DataObject, as_of_database: str, passwords: Passwords
) -> None:
    """GET ... ?as_of= computes the past from the log; a rebuild of the log cut at the same
    point must give the same users and balances: cut after every operation, by position and
    by time, and once at a random position (possibly inside a transaction's events)."""
    ends: list[tuple[int, datetime]] = []
    async with await psycopg.AsyncConnection.connect(as_of_database, autocommit=True) as conn:

        async def note_the_end() -> None:
            ends.append(await (await conn.execute(SELECT_LOG_END)).fetchone())  # type: ignore[arg-type]

        run = await run_sequence(conn, passwords, sequence, note_the_end)
        # A share of the log, never a value read from the database: the log grows from
        # example to example, and hypothesis must be able to replay its draws.
        share = data.draw(st.integers(0, 1000), label="random position cut, in thousandths of the log")
        last_position = ends[-1][0]
        cuts = [Cut(position=1 + share * (last_position - 1) // 1000)]
        for position, time in ends:
            cuts += [Cut(position=position), Cut(time=time)]
        ids = sorted(run.every_user_id)
        async with await psycopg.AsyncConnection.connect(
            as_of_database, autocommit=True, prepare_threshold=None
        ) as rebuild_conn:
            for cut in cuts:
                as_of_accounts = await past.accounts_of_users_at(conn, ids, cut)
                as_of_users = [
                    u for u in await past.users_page_at(conn, cut, ids[0] - 1, 1000) if u.id in ids
                ]
                rebuilt = await rebuild_at(rebuild_conn, cut)
                assert as_of_accounts == [a for a in rebuilt.accounts if a.user_id in run.every_user_id], cut
                assert [public(u) for u in as_of_users] == [
                    public(u) for u in rebuilt.users if u.id in ids
                ], cut


def public(user: UserView) -> tuple[object, ...]:
    """What a user list shows of a user."""
    return (user.id, user.email, user.full_name, user.is_admin, user.is_auditor)
