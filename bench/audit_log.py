"""`python -m bench.audit_log`: how long an auditor waits for `ledger replay` and `ledger verify`
on a big log (issue 3's targets: 1,000,000 payment events over 10,000 accounts; replay, which
rebuilds every projection and compares it with the live one, under 15 s; verify at 100,000
events/s or more).

It fills a fresh database (on --database-url's server, or an embedded PostgreSQL) in SQL, with
events that are valid in every way verify checks: chained by the database's own trigger, signed
with the bench's webhook secret, and projected by `ledger replay --apply`. Then it times the two
commands as an operator runs them (`python -m ledger ...`, interpreter start included), beside a
bare sequential scan of the log in the same run, so that the figures can be read as ratios too.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import psycopg
import simplejson

from bench.run import database_server, fresh_database

BENCH_SECRET = "bench-webhook-secret"
USERS = 1_000
BATCH_EVENTS = 100_000

INSERT_USERS = """
    INSERT INTO events (stream, type, data)
    SELECT 'user-' || u, 'UserRegistered',
           jsonb_build_object('user_id', u, 'email', 'audit-' || u || '@example.com', 'full_name', 'Audited',
                              'is_admin', false, 'is_auditor', false, 'password_hash', 'bench-not-a-hash')
    FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS u
"""

# Account a belongs to user first_user + a % users.
INSERT_ACCOUNTS = """
    INSERT INTO events (stream, type, data)
    SELECT 'account-' || a, 'AccountOpened',
           jsonb_build_object('account_id', a, 'user_id', %(first_user)s + a %% %(users)s)
    FROM generate_series(%(first_account)s::bigint, %(last_account)s::bigint) AS a
"""

# Payment g goes to account first_account + g % accounts, signed as the provider signs.
INSERT_PAYMENTS = """
    INSERT INTO events (stream, type, data, transaction_id)
    SELECT 'account-' || p.account_id, 'PaymentReceived',
           jsonb_build_object('transaction_id', p.transaction_id, 'user_id', p.user_id,
                              'account_id', p.account_id, 'amount', p.amount,
                              'signature', encode(sha256(convert_to(
                                  p.account_id || p.amount || p.transaction_id || p.user_id || %(secret)s,
                                  'UTF8')), 'hex')),
           p.transaction_id
    FROM (
        SELECT %(first_account)s + g %% %(accounts)s AS account_id,
               %(first_user)s + (%(first_account)s + g %% %(accounts)s) %% %(users)s AS user_id,
               (((g %% 99999) + 1)::numeric / 100)::numeric(20,2)::text AS amount,
               %(run)s || '-' || g AS transaction_id
        FROM generate_series(%(from)s::bigint, %(to)s::bigint) AS g
    ) AS p
"""

SCAN_LOG = "SELECT count(*), sum(length(data::text)) FROM events"


def fill(url: str, events: int, accounts: int) -> float:
    """Fill the ledger: users, their accounts, then payments; return the seconds it took."""
    started = time.monotonic()
    run = uuid.uuid4().hex[:8]
    first_user, first_account = 1_000_000, 1_000_000
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(INSERT_USERS, {"first": first_user, "last": first_user + USERS - 1})
        conn.execute(
            INSERT_ACCOUNTS,
            {
                "first_user": first_user,
                "users": USERS,
                "first_account": first_account,
                "last_account": first_account + accounts - 1,
            },
        )
        for start in range(0, events, BATCH_EVENTS):
            conn.execute(
                INSERT_PAYMENTS,
                {
                    "secret": BENCH_SECRET,
                    "first_user": first_user,
                    "users": USERS,
                    "first_account": first_account,
                    "accounts": accounts,
                    "run": run,
                    "from": start,
                    "to": min(start + BATCH_EVENTS, events) - 1,
                },
            )
            print(f"  {min(start + BATCH_EVENTS, events):>9} payment events", file=sys.stderr)
        conn.execute("VACUUM ANALYZE events")
    return time.monotonic() - started


def ledger(url: str, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    env = {**os.environ, "LEDGER_DATABASE_URL": url, "LEDGER_WEBHOOK_SECRETS": BENCH_SECRET}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "ledger", *args], env=env, capture_output=True, text=True, check=False
    )
    return time.monotonic() - started, result


def scan(url: str) -> float:
    with psycopg.connect(url) as conn:
        started = time.monotonic()
        conn.execute(SCAN_LOG).fetchone()
        return time.monotonic() - started


def measure(server_url: str, events: int, accounts: int, repeats: int) -> dict[str, Any]:
    with fresh_database(server_url) as url:
        print(f"filling {events} payment events over {accounts} accounts ...", file=sys.stderr)
        fill_s = fill(url, events, accounts)
        apply_s, applied = ledger(url, "replay", "--apply")
        assert applied.returncode == 0, applied.stdout + applied.stderr
        with psycopg.connect(url) as conn:
            total_events = conn.execute("SELECT count(*) FROM events").fetchone()[0]  # type: ignore[index]
        runs = []
        for _ in range(repeats):
            scan_s = scan(url)
            replay_s, replayed = ledger(url, "replay")
            verify_s, verified = ledger(url, "verify")
            runs.append(
                {
                    "scan_s": round(scan_s, 2),
                    "replay_s": round(replay_s, 2),
                    "replay_equal": replayed.returncode == 0,
                    "verify_s": round(verify_s, 2),
                    "verify_intact": verified.returncode == 0,
                    "verify_events_per_s": round(total_events / verify_s),
                    "replay_to_scan": round(replay_s / scan_s, 1),
                    "verify_to_scan": round(verify_s / scan_s, 1),
                }
            )
            if replayed.returncode or verified.returncode:
                print(replayed.stdout + replayed.stderr + verified.stdout[-2000:], file=sys.stderr)
        best_replay = min(r["replay_s"] for r in runs)
        best_verify_rate = max(r["verify_events_per_s"] for r in runs)
        return {
            "events": total_events,
            "payment_events": events,
            "accounts": accounts,
            "fill_s": round(fill_s, 1),
            "projections_built_s": round(apply_s, 1),
            "runs": runs,
            "replay_under_15_s": all(r["replay_s"] < 15 and r["replay_equal"] for r in runs),
            "verify_at_least_100k_per_s": all(
                r["verify_events_per_s"] >= 100_000 and r["verify_intact"] for r in runs
            ),
            "best_replay_s": best_replay,
            "best_verify_events_per_s": best_verify_rate,
            "load_after": [round(x, 2) for x in os.getloadavg()],
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.audit_log", description=__doc__)
    parser.add_argument("--database-url", help="a PostgreSQL server where databases can be created")
    parser.add_argument("--events", type=int, default=1_000_000, help="payment events (default 1,000,000)")
    parser.add_argument("--accounts", type=int, default=10_000, help="accounts (default 10,000)")
    parser.add_argument("--repeats", type=int, default=2, help="times each command is run (default 2)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    with database_server(args.database_url) as (url, _):
        report = measure(url, args.events, args.accounts, args.repeats)
    if args.json:
        print(simplejson.dumps(report, indent=2))
    else:
        print(
            f"{report['events']} events ({report['payment_events']} payments) "
            f"over {report['accounts']} accounts"
        )
        print(f"filled in {report['fill_s']} s; projections built in {report['projections_built_s']} s")
        print(
            f"{'run':>3} {'scan s':>7} {'replay s':>9} {'verify s':>9} "
            f"{'verify ev/s':>12} {'replay/scan':>11}"
        )
        for number, r in enumerate(report["runs"], start=1):
            print(
                f"{number:>3} {r['scan_s']:>7} {r['replay_s']:>9} {r['verify_s']:>9} "
                f"{r['verify_events_per_s']:>12} {r['replay_to_scan']:>11}"
            )
        print(
            f"replay under 15 s: {report['replay_under_15_s']}; verify >= 100k events/s: "
            f"{report['verify_at_least_100k_per_s']}"
        )
    return 0 if report["replay_under_15_s"] and report["verify_at_least_100k_per_s"] else 1


if __name__ == "__main__":
    sys.exit(main())
