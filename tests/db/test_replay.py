"""`ledger replay`: the projections rebuilt from the log alone equal the live ones, and a
projection that drifted from the log is named, then repaired only when asked."""

from __future__ import annotations

import psycopg
import pytest

from tests.support import fill_small_ledger as fill
from tests.support import ledger_cli


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
