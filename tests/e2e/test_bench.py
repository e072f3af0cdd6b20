"""`python -m bench all --through-pgbouncer` end to end, briefly and at low concurrency: every
scenario runs without errors and the money adds up. No speed is asserted: this machine is shared."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ledger.config import REPO_ROOT

TIMEOUT_S = 120


def test_the_bench_runs_every_scenario_and_the_sums_match(server_url: str) -> None:
    command = [
        sys.executable,
        "-m",
        "bench",
        "all",
        "--database-url",
        server_url,
        "--json",
        "--through-pgbouncer",
    ]
    command += ["--duration", "2", "--rounds", "2", "--concurrency", "4", "--workers", "2", "--users", "20"]
    finished = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert finished.returncode == 0, finished.stderr
    report = json.loads(finished.stdout)

    scenarios = report["scenarios"]
    expected = {
        "yardstick_credit",
        "ceiling_write",
        "ceiling_read",
        "generator",
        "webhook",
        "webhook_pgbouncer",
        "webhook_redeliveries",
    }
    assert expected | {"accounts", "login"} == set(scenarios)
    for name, figures in scenarios.items():
        assert figures["requests"] > 0, name
        assert figures["errors"] == 0, (name, figures)
    assert scenarios["webhook"]["statuses"] == {"201": scenarios["webhook"]["requests"]}
    # The same deliveries through PgBouncer in transaction mode, in the same rounds (their
    # credits are in sums_match too).
    assert scenarios["webhook_pgbouncer"]["statuses"] == {"201": scenarios["webhook_pgbouncer"]["requests"]}
    assert len(scenarios["webhook_pgbouncer"]["ratio_to_direct_per_round"]) == 2
    redeliveries = scenarios["webhook_redeliveries"]
    assert redeliveries["redeliveries_answered_200"] == redeliveries["redeliveries_sent"] > 0
    assert report["sums_match"] is True, report["sums"]
    # pgbench's deliveries each had a new transaction id: each was credited, as the service's are.
    assert scenarios["ceiling_write"]["credited"] == scenarios["ceiling_write"]["requests"]
    assert scenarios["webhook"]["ratio_to_ceiling"] > 0
    # The yardstick credited each of its deliveries too, on a schema of its own, and the
    # webhook's share of it is given round by round.
    assert scenarios["yardstick_credit"]["requests"] > 0
    assert len(scenarios["webhook"]["share_of_yardstick_per_round"]) == 2
    assert scenarios["webhook"]["share_of_yardstick"] > 0
    assert scenarios["accounts"]["ratio_to_ceiling"] > 0
    # The ceilings and the service took turns, round by round, each round giving a ratio.
    for name in (
        "yardstick_credit",
        "ceiling_write",
        "ceiling_read",
        "webhook",
        "webhook_pgbouncer",
        "webhook_redeliveries",
        "accounts",
    ):
        assert scenarios[name]["rounds"] == 2, name
        assert sum(scenarios[name]["rps_per_round"]) > 0, name
    assert all(ratio > 0 for ratio in scenarios["webhook"]["ratio_per_round"])
    for figures in scenarios.values():
        assert figures["machine_cpu_ms_per_request"] > 0
    roles = sorted(name.partition(":")[0] for name in report["server_rss_mb"])
    assert roles.count("worker") == 2 and roles.count("main") == 1, roles


def test_the_audit_bench_fills_a_valid_log_that_replays_equal_and_verifies_intact(server_url: str) -> None:
    """`python -m bench.audit_log` on a small log: its SQL fill is a ledger that replay finds
    equal and verify finds intact (chained, signed), so its timings time the real work."""
    command = [sys.executable, "-m", "bench.audit_log", "--database-url", server_url, "--json"]
    command += ["--events", "3000", "--accounts", "50", "--repeats", "1"]
    finished = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=TIMEOUT_S)
    report = json.loads(finished.stdout)  # exit 1 is the speed verdict, not asserted here
    assert report["events"] == 3000 + 50 + 1000 + 3  # payments, accounts, its users, the seeds
    (run,) = report["runs"]
    assert run["replay_equal"] is True and run["verify_intact"] is True, finished.stderr


# A stand-in for pgledger (not part of this repository), in two files that must run in order:
# the bench installs what --pgledger names and calls its two functions as it calls pgledger's.
PEER_TABLES = "CREATE TABLE pgledger_accounts (id text PRIMARY KEY, balance numeric NOT NULL DEFAULT 0);"
PEER_FUNCTIONS = """
CREATE FUNCTION pgledger_create_account(name text, currency text, allow_negative_balance boolean)
RETURNS SETOF pgledger_accounts LANGUAGE sql AS $$
    INSERT INTO pgledger_accounts (id) VALUES (name) RETURNING *
$$;
CREATE FUNCTION pgledger_create_transfer(from_id text, to_id text, amount numeric)
RETURNS SETOF pgledger_accounts LANGUAGE sql AS $$
    UPDATE pgledger_accounts SET balance = balance + CASE WHEN id = from_id THEN -amount ELSE amount END
    WHERE id IN (from_id, to_id) RETURNING *
$$;
"""


def test_the_transfers_bench_runs_beside_its_peer_and_the_books_balance(
    server_url: str, tmp_path: Path
) -> None:
    (tmp_path / "1-tables.sql").write_text(PEER_TABLES)
    (tmp_path / "2-functions.sql").write_text(PEER_FUNCTIONS)
    command = [sys.executable, "-m", "bench", "transfers", "--database-url", server_url, "--json"]
    command += ["--duration", "2", "--rounds", "2", "--concurrency", "4", "--users", "20"]
    command += ["--pgledger", str(tmp_path / "1-tables.sql"), str(tmp_path / "2-functions.sql")]
    finished = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert finished.returncode == 0, finished.stderr
    report = json.loads(finished.stdout)

    scenarios = report["scenarios"]
    assert set(scenarios) == {"ceiling_transfers", "transfers", "pgledger_transfers"}
    for name, figures in scenarios.items():
        assert figures["requests"] > 0 and figures["errors"] == 0, (name, figures)
        assert figures["rounds"] == 2, name
    assert scenarios["transfers"]["statuses"] == {"201": scenarios["transfers"]["requests"]}
    assert scenarios["transfers"]["ratio_to_ceiling"] > 0
    assert len(scenarios["transfers"]["ratio_to_pgledger_per_round"]) == 2
    assert scenarios["ceiling_transfers"]["ratio_to_pgledger"] > 0
    # Transfers create no money: the users' balances are still their payments, and the books
    # (the provider's clearing account included) sum to zero.
    assert report["sums_match"] is True, report["sums"]
    assert report["sums"]["ledger_total"] == "0.00"
