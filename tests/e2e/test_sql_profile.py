"""`python -m bench.sql_profile` end to end, very briefly: every variant of receive_payment()
was built from the current definition, ran and credited each of its deliveries. No speed is
asserted: this machine is shared."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench import sql_profile
from ledger.config import REPO_ROOT

TIMEOUT_S = 60


def test_the_profile_runs_every_variant(server_url: str) -> None:
    command = [sys.executable, "-m", "bench.sql_profile", "--database-url", server_url, "--json"]
    command += ["--rounds", "1", "--duration", "1", "--concurrency", "2", "--users", "20"]
    finished = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert finished.returncode == 0, finished.stderr
    report = json.loads(finished.stdout)

    variants = report["variants"]
    expected = {"full", "yardstick", "receive_payment_bare"}
    expected |= {f"receive_payment_without_{r.step}" for r in sql_profile.REMOVALS}
    # Each per-row INSERT trigger on events, listed from pg_trigger, in a database without it.
    expected |= {"without_trigger_events_chain", "without_trigger_events_balanced"}
    assert set(variants) == expected
    for name, figures in variants.items():
        assert figures["tps"] > 0, name
        assert figures["errors"] == 0, (name, figures)
        # Each variant still recorded every delivery it was sent: none answered 'seen' or
        # 'user_not_found' for want of a step, which would have made it look faster.
        assert figures["credited"] == figures["transactions"] > 0, (name, figures)
    assert variants["full"]["ratio_to_full"] == 1.0
    triggers = {(t["table"], t["trigger"]) for t in report["triggers"]}
    assert {("events", "events_chain"), ("events", "events_balanced")} <= triggers


def test_a_step_not_found_in_the_definition_fails_loudly() -> None:
    full = sql_profile.function_text()
    missing = sql_profile.Removal("nothing", "text that is not there", "    PERFORM no_such_step();\n")
    with pytest.raises(ValueError, match="found 0 times"):
        sql_profile.variant_function(full, missing)
    twice = sql_profile.Removal("twice", "text found twice", "p_transaction_id")
    with pytest.raises(ValueError, match="not once"):
        sql_profile.variant_function(full, twice)
