"""`python -m bench all --through-pgbouncer` end to end, briefly and at low concurrency: every
scenario runs without errors and the money adds up. No speed is asserted: this machine is shared."""

from __future__ import annotations

import json
import subprocess
import sys

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
