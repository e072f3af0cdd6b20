"""`ledger replay`: the projections rebuilt from the log alone equal the live ones, and a
projection that drifted from the log is named, then repaired only when asked."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from ledger import commands
from ledger.commands import NewUser, UserChanges
from ledger.config import CHEAPEST_ARGON2
from ledger.passwords import Passwords
from ledger.projections.accounts import AccountView
from ledger.projections.past import Cut
from ledger.projections.rebuild import (
    SELECT_ACCOUNTS,
    SELECT_LIVE_USERS,
    Difference,
    RebuiltState,
    ReplayReport,
    rebuild_at,
    replay,
)
from ledger.projections.users import UserView
from tests.support import PASSWORD, delivery, ledger_cli, new_account_id
from tests.support import fill_small_ledger as fill


def test_replay_finds_the_live_projections_equal_to_the_rebuild(own_database: str) -> None:
    fill(own_database)
    result = ledger_cli(own_database, "replay")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "projections equal the rebuild" in result.stdout
    assert "4 users, 4 accounts, 5 payments" in result.stdout


@pytest.mark.parametrize(
    "damage",
    [
        "UPDATE accounts SET balance = balance + 0.01 WHERE id = 10",
        "UPDATE users SET full_name = 'Mallory' WHERE email = 'alice@example.com'",
        "UPDATE users SET deleted = false WHERE email = 'bob@example.com'",
        "DELETE FROM payments WHERE id = (SELECT max(id) FROM payments)",
        "INSERT INTO accounts (id, user_id, balance) VALUES (99, 1, 0)",
    ],
)
def test_replay_names_a_drifted_projection_and_repairs_it_only_with_apply(
    own_database: str, damage: str
) -> None:
    fill(own_database)
    with psycopg.connect(own_database) as conn:
        conn.execute(damage)
        live_before = conn.execute("SELECT * FROM accounts ORDER BY id").fetchall()

    found = ledger_cli(own_database, "replay")
    assert found.returncode == 1, found.stdout + found.stderr
    assert "DIFFER" in found.stdout
    assert "only in" in found.stdout
    with psycopg.connect(own_database) as conn:
        assert conn.execute("SELECT * FROM accounts ORDER BY id").fetchall() == live_before

    repaired = ledger_cli(own_database, "replay", "--apply")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    again = ledger_cli(own_database, "replay")
    assert again.returncode == 0, again.stdout + again.stderr


# In process: the exact report, and the rebuild at a cut that the as_of reads stand on.


SELECT_LAST_EVENT = "SELECT position, recorded_at FROM events ORDER BY position DESC LIMIT 1"


async def rebuilt_at(database_url: str, cut: Cut) -> RebuiltState:
    # A connection of its own for each rebuild (see rebuild_at()).
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        return await rebuild_at(conn, cut)


async def live_state(database_url: str) -> RebuiltState:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        users = await (await conn.execute(SELECT_LIVE_USERS)).fetchall()
        accounts = await (await conn.execute(SELECT_ACCOUNTS)).fetchall()
    return RebuiltState([UserView(*row) for row in users], [AccountView(*row) for row in accounts])


async def test_a_rebuild_at_a_cut_gives_the_users_and_balances_of_that_moment(own_database: str) -> None:
    await asyncio.to_thread(fill, own_database)
    then = await live_state(own_database)
    async with await psycopg.AsyncConnection.connect(own_database, autocommit=True) as conn:
        row = await (
            await conn.execute("SELECT position, recorded_at FROM events ORDER BY position DESC")
        ).fetchone()
        assert row is not None
        position, recorded_at = row
        # Later: a payment into an existing account, a new account, a renamed and a new user.
        await commands.receive_payment(conn, delivery(1, 1, "7.00"))
        await commands.receive_payment(conn, delivery(1, new_account_id(), "3.00"))
        passwords = Passwords(CHEAPEST_ARGON2)
        await commands.update_user(conn, passwords, 1, UserChanges(full_name="Renamed"))
        await commands.register(conn, passwords, NewUser("carol@example.com", "Carol", PASSWORD))
    now = await live_state(own_database)
    assert now != then

    assert await rebuilt_at(own_database, Cut(position=position)) == then
    assert await rebuilt_at(own_database, Cut(time=recorded_at)) == then
    assert await rebuilt_at(own_database, Cut()) == now
    assert await live_state(own_database) == now  # nothing live was touched


async def replayed(database_url: str, **options: bool) -> ReplayReport:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        return await replay(conn, **options)


async def test_the_replay_report_counts_what_it_rebuilt_and_names_what_differs(own_database: str) -> None:
    await asyncio.to_thread(fill, own_database)
    report = await replayed(own_database)
    assert report.summary() == (
        "replayed 15 events: 4 users, 4 accounts, 5 payments, balances total 16.25; "
        "projections equal the rebuild"
    )
    with psycopg.connect(own_database) as conn:
        conn.execute("UPDATE accounts SET balance = balance + 0.01 WHERE id = 10")
    drifted = await replayed(own_database)
    assert not drifted.equal
    assert drifted.summary().endswith("; projections DIFFER from the rebuild")
    assert Difference("ledger", "the projections", "every account's balance sums to 0.01, not 0.00") in (
        drifted.differences
    )
    repaired = await replayed(own_database, apply_to_live=True)
    assert repaired.equal, repaired.differences
    assert (await replayed(own_database)).equal


async def test_the_replay_names_the_first_twenty_differences(own_database: str) -> None:
    async with await psycopg.AsyncConnection.connect(own_database, autocommit=True) as conn:
        await commands.receive_payments(conn, [delivery(1, new_account_id(), "1.00") for _ in range(25)])
        await conn.execute("UPDATE accounts SET balance = balance + 0.01")
    differences = (await replayed(own_database)).differences
    assert len([d for d in differences if d.projection != "ledger"]) == 20, differences


async def test_a_replay_compares_one_moment_while_payments_keep_arriving(own_database: str) -> None:
    """The log and the live tables are read in one snapshot: payments committed while the
    rebuild runs are in neither, so they never show as differences."""
    stop = asyncio.Event()

    async def keep_paying() -> int:
        paid = 0
        async with await psycopg.AsyncConnection.connect(own_database, autocommit=True) as conn:
            while not stop.is_set():
                await commands.receive_payment(conn, delivery(1, 1, "0.01"))
                paid += 1
        return paid

    payer = asyncio.create_task(keep_paying())
    try:
        reports = [await replayed(own_database) for _ in range(3)]
    finally:
        stop.set()
    assert await payer > 0
    assert all(report.equal for report in reports), [report.differences for report in reports]
