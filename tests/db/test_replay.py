"""`ledger replay`: the projections rebuilt from the log alone equal the live ones, and a
projection that drifted from the log is named, then repaired only when asked."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import psycopg
import pytest

from ledger import commands
from ledger.commands import NewUser, UserChanges
from ledger.config import CHEAPEST_ARGON2
from ledger.passwords import Passwords
from tests.support import PASSWORD, delivery


def ledger_cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LEDGER_DATABASE_URL": database_url, "LEDGER_JWT_SECRET": "replay-test"}
    return subprocess.run(
        [sys.executable, "-m", "ledger", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def fill(database_url: str) -> None:
    """Give the ledger users, updates, a deletion and payments, through the real commands."""

    async def run() -> None:
        passwords = Passwords(CHEAPEST_ARGON2)
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            alice = await commands.register(conn, passwords, NewUser("alice@example.com", "Alice", PASSWORD))
            bob = await commands.register(conn, passwords, NewUser("bob@example.com", "Bob", PASSWORD))
            await commands.update_user(
                conn, passwords, alice.id, UserChanges(full_name="Alice B", password="new-pass")
            )
            for i, (user, account_id) in enumerate(
                [(alice, 10), (alice, 11), (bob, 12), (alice, 10), (1, 1)]
            ):
                user_id = user if isinstance(user, int) else user.id
                await commands.receive_payment(conn, delivery(user_id, account_id, f"{i + 1}.25"))
            await commands.delete_user(conn, 2, bob.id)

    asyncio.run(run())


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
