"""Growth: the webhook figure on the default database, with ten times the accounts, after a
million payments already in the log, and with a hundred thousand users.

Each variant gets its own fresh database, seeded once; then the variants take turns, round
after round, each on a freshly started `ledger serve`, and each variant's figure is the median
of its rounds. Taking turns spreads the other loads of a shared machine over all variants
alike, which one run after the other would not.
"""

from __future__ import annotations

import os
import secrets
import statistics
import time
from contextlib import ExitStack
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench import seed, server
from bench.figures import Figures
from bench.run import (
    HOST,
    PREPARED_PER_S,
    WEBHOOK_OK,
    Deliveries,
    Options,
    database_server,
    fresh_database,
    measure_load,
)

ACCOUNTS_X10_USERS = 10_000  # x 2 accounts each: 20,000 accounts, ten times the default
USERS_100K = 100_000  # one account each: a hundred times the default's users
EVENTS_1M = 1_000_000
ROUNDS = 3


def growth(options: Options, log_dir: Path, rounds: int = ROUNDS) -> dict[str, Any]:
    """Return each variant's median webhook figure and its ratio to the small database's."""
    webhook_secret = b"bench-webhook-" + secrets.token_hex(8).encode()
    jwt_secret = secrets.token_hex(32).encode()
    variants = {
        "small": options,
        "accounts_x10": replace(options, population=replace(options.population, users=ACCOUNTS_X10_USERS)),
        "events_1m": replace(options, events=EVENTS_1M),
        "users_100k": replace(
            options, population=replace(options.population, users=USERS_100K, accounts_per_user=1)
        ),
    }
    report: dict[str, Any] = {"load_before": [round(x, 2) for x in os.getloadavg()], "rounds": rounds}
    figures: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    with ExitStack() as stack:
        server_url, kind = stack.enter_context(database_server(options.database_url))
        urls: dict[str, str] = {}
        for name, variant in variants.items():
            urls[name] = stack.enter_context(fresh_database(server_url))
            started = time.monotonic()
            seed.seed(urls[name], variant.population, variant.events, webhook_secret)
            report.setdefault("seed_s", {})[name] = round(time.monotonic() - started, 1)
        for _ in range(rounds):
            for name, variant in variants.items():
                figures[name].append(_webhook_round(urls[name], variant, jwt_secret, webhook_secret, log_dir))
    report["database"] = kind
    small_rps = statistics.median(figure["rps"] for figure in figures["small"])
    report["variants"] = {}
    for name, variant in variants.items():
        rps = statistics.median(figure["rps"] for figure in figures[name])
        report["variants"][name] = {
            "users": variant.population.users,
            "accounts": variant.population.accounts,
            "events_seeded": variant.events,
            "median_rps": rps,
            "rps_per_round": [figure["rps"] for figure in figures[name]],
            "p99_ms_per_round": [figure["p99_ms"] for figure in figures[name]],
            # What the code costs per delivery, which the machine's other loads barely move.
            "median_server_cpu_ms_per_request": statistics.median(
                figure["server_cpu_ms_per_request"] for figure in figures[name]
            ),
            "errors": sum(figure["errors"] for figure in figures[name]),
            "ratio_to_small": round(rps / small_rps, 3),
            "within_20pct_of_small": rps >= 0.8 * small_rps,
            "sums_match": all(figure["sums_match"] for figure in figures[name]),
        }
    report["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return report


def _webhook_round(
    url: str, options: Options, jwt_secret: bytes, webhook_secret: bytes, log_dir: Path
) -> dict[str, Any]:
    port = server.free_port()
    balances_before, _, _ = seed.totals(url)
    with server.ledger_serve(
        url, port, options.workers, jwt_secret, webhook_secret, log_dir / "ledger-serve-growth.log"
    ) as process:
        deliveries = Deliveries(options.population, webhook_secret, f"{HOST}:{port}", 0.0)
        deliveries.prepare(round(options.duration_s * PREPARED_PER_S))
        measured = measure_load(
            port,
            options,
            options.duration_s,
            deliveries.next_request,
            deliveries.on_answer,
            process,
            WEBHOOK_OK,
        )
        figure = Figures([measured]).summary()
    balances_after, logged, _ = seed.totals(url)
    accepted = Decimal(deliveries.accepted_cents) / 100
    figure["sums_match"] = balances_after - balances_before == accepted and balances_after == logged
    return figure
