"""The scenarios and the run that ties them together: a fresh database, seeded; pgbench's
ceiling; `ledger serve`; the generator's own ceiling; then webhook, accounts and login."""

from __future__ import annotations

import os
import random
import secrets
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import psycopg.sql
import simplejson

from bench import ceiling, load, seed, server
from bench.seed import Population
from ledger import db, signatures
from ledger.config import REPO_ROOT, Argon2Cost
from ledger.http.auth import Tokens
from ledger.projections.users import LoginRecord

SCENARIOS = ("generator", "ceiling", "webhook", "accounts", "login")
WEBHOOK_OK = frozenset({200, 201})
READ_OK = frozenset({200})
REDELIVERY_SHARE = 0.10
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Options:
    database_url: str | None
    duration_s: float
    concurrency: int
    workers: int
    population: Population
    events: int
    scenarios: tuple[str, ...]


# The database ---------------------------------------------------------------------------------


@contextmanager
def database_server(database_url: str | None) -> Iterator[tuple[str, str]]:
    """Yield (URL of a server's maintenance database, what it is): the given one or an embedded one."""
    if database_url:
        yield database_url, "external"
        return
    with (
        tempfile.TemporaryDirectory(prefix="bench-pg-") as data_dir,
        db.embedded_postgres(Path(data_dir)) as url,
    ):
        yield url, "embedded"


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """Yield the URL of a new database on that server, migrated; drop it afterwards."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    url = urlunsplit(urlsplit(server_url)._replace(path="/" + name))
    try:
        db.migrate(url, REPO_ROOT / "sql")
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(
                psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    psycopg.sql.Identifier(name)
                )
            )


# Requests -------------------------------------------------------------------------------------


def _amount_text(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


class Deliveries:
    """Signed webhook deliveries with new transaction ids, and optionally re-deliveries of
    earlier accepted ones; counts what the service accepted, in cents."""

    def __init__(self, population: Population, secret: bytes, host: str, redelivery_share: float) -> None:
        self._population = population
        self._secret = secret
        self._host = host
        self._redelivery_share = redelivery_share
        self._run = uuid.uuid4().hex[:8]
        self._count = 0
        self._accepted_requests: list[bytes] = []
        self.accepted_cents = 0
        self.redeliveries_sent = 0
        self.redeliveries_answered_200 = 0

    def next_request(self) -> tuple[bytes, Any]:
        if self._accepted_requests and random.random() < self._redelivery_share:
            self.redeliveries_sent += 1
            return random.choice(self._accepted_requests), None
        self._count += 1
        user_id = random.randint(self._population.first_user, self._population.last_user)
        account_id = random.choice(self._population.account_ids(user_id))
        cents = random.randint(1, 100_000)
        amount = _amount_text(cents)
        transaction_id = f"bench-{self._run}-{self._count}"
        signed = signatures.payload(str(account_id), amount, transaction_id, str(user_id))
        signature = signatures.sign(signed, self._secret)
        body = (
            f'{{"transaction_id":"{transaction_id}","user_id":{user_id},"account_id":{account_id},'
            f'"amount":{amount},"signature":"{signature}"}}'
        ).encode()
        request = load.request_bytes("POST", "/webhook/payment", self._host, body)
        return request, (cents, request)

    def on_answer(self, tag: Any, status: int, body: bytes) -> None:
        if tag is None:  # a re-delivery: must be answered 200, adding nothing
            self.redeliveries_answered_200 += status == 200
            return
        cents, request = tag
        if status == 201:
            self.accepted_cents += cents
            if self._redelivery_share:
                self._accepted_requests.append(request)


def account_reads(population: Population, tokens: Tokens, host: str) -> load.NextRequest:
    requests = [
        load.request_bytes(
            "GET",
            "/user/accounts",
            host,
            headers={"Authorization": f"Bearer {tokens.issue(LoginRecord(user_id, '', 1))}"},
        )
        for user_id in population.user_ids()
    ]
    return lambda: (random.choice(requests), None)


def logins(population: Population, host: str) -> load.NextRequest:
    def next_request() -> tuple[bytes, Any]:
        user_id = random.randint(population.first_user, population.last_user)
        body = simplejson.dumps({"email": f"bench-{user_id}@example.com", "password": seed.PASSWORD}).encode()
        return load.request_bytes("POST", "/login", host, body), None

    return next_request


def trivial_requests(host: str) -> load.NextRequest:
    request = load.request_bytes("GET", "/", host)
    return lambda: (request, None)


def _load(
    port: int,
    options: Options,
    next_request: load.NextRequest,
    on_answer: load.OnAnswer | None = None,
    process: subprocess.Popen[bytes] | None = None,
    ok_statuses: frozenset[int] = READ_OK,
) -> dict[str, Any]:
    """Run the generator against port; return its summary, with the server's CPU per request."""
    loop = load.new_event_loop()
    cpu_before = server.cpu_s(process) if process else 0.0
    try:
        result = loop.run_until_complete(
            load.run(
                HOST,
                port,
                options.concurrency,
                options.duration_s,
                next_request,
                on_answer or (lambda tag, status, body: None),
            )
        )
    finally:
        loop.close()
    summary = result.summary(ok_statuses)
    if process:
        # CPU per request is what the code costs, whatever else shares the machine.
        summary["server_cpu_ms_per_request"] = round(
            (server.cpu_s(process) - cpu_before) * 1000 / max(1, result.requests), 3
        )
    return summary


# The run --------------------------------------------------------------------------------------


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator else None


def run(options: Options, log_dir: Path) -> dict[str, Any]:
    """Run the chosen scenarios on a fresh, seeded database; return the report."""
    webhook_secret = b"bench-webhook-" + secrets.token_hex(8).encode()
    jwt_secret = secrets.token_hex(32).encode()
    cost = Argon2Cost()
    report: dict[str, Any] = {
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "settings": {
            "duration_s": options.duration_s,
            "concurrency": options.concurrency,
            "workers": options.workers,
            "users": options.population.users,
            "accounts": options.population.accounts,
            "events_seeded": options.events,
            "login_argon2": (
                f"every seeded user has a real default-cost hash (argon2id t={cost.time_cost}, "
                f"m={cost.memory_cost_kib} KiB, p={cost.parallelism}); the server runs with default settings"
            ),
            "load_generator": (
                "bench.load: asyncio + uvloop raw HTTP/1.1 keep-alive connections in the bench process; "
                "'generator' is the same generator against a server that answers at once"
            ),
        },
        "scenarios": {},
    }
    scenarios: dict[str, Any] = report["scenarios"]
    with database_server(options.database_url) as (server_url, kind), fresh_database(server_url) as url:
        report["settings"]["database"] = kind
        started = time.monotonic()
        seed.seed(url, options.population, options.events, webhook_secret)
        report["settings"]["seed_s"] = round(time.monotonic() - started, 1)

        if "ceiling" in options.scenarios:
            variables = {"n": "0", "run": uuid.uuid4().hex[:8], "secret": webhook_secret.decode()}
            write = ceiling.run_pgbench(
                url,
                ceiling.webhook_script(options.population),
                options.concurrency,
                options.duration_s,
                variables,
            )
            scenarios["ceiling_write"] = write.summary()
            # Every pgbench delivery had a new transaction id, so each one was credited, as
            # each of the service's is: the ceiling did the same work per delivery.
            scenarios["ceiling_write"]["credited"] = seed.count_payments_like(
                url, f"pgb-{variables['run']}-%"
            )
            read = ceiling.run_pgbench(
                url, ceiling.accounts_script(options.population), options.concurrency, options.duration_s, {}
            )
            scenarios["ceiling_read"] = read.summary()

        if "generator" in options.scenarios:
            port = server.free_port()
            with server.trivial_server(port, log_dir / "trivial.log"):
                scenarios["generator"] = _load(port, options, trivial_requests(f"{HOST}:{port}"))

        port = server.free_port()
        host = f"{HOST}:{port}"
        with server.ledger_serve(
            url, port, options.workers, jwt_secret, webhook_secret, log_dir / "ledger-serve.log"
        ) as process:
            if "webhook" in options.scenarios:
                balances_before, _, _ = seed.totals(url)
                accepted = Decimal(0)
                for name, share in (("webhook", 0.0), ("webhook_redeliveries", REDELIVERY_SHARE)):
                    deliveries = Deliveries(options.population, webhook_secret, host, share)
                    scenarios[name] = _load(
                        port, options, deliveries.next_request, deliveries.on_answer, process, WEBHOOK_OK
                    )
                    if share:
                        scenarios[name]["redeliveries_sent"] = deliveries.redeliveries_sent
                        scenarios[name]["redeliveries_answered_200"] = deliveries.redeliveries_answered_200
                    accepted += Decimal(deliveries.accepted_cents) / 100
                balances_after, logged, _ = seed.totals(url)
                report["sums"] = {
                    "balances_gained": str(balances_after - balances_before),
                    "accepted_amounts": str(accepted),
                    "balances_total": str(balances_after),
                    "payments_in_log_total": str(logged),
                }
                report["sums_match"] = (
                    balances_after - balances_before == accepted and balances_after == logged
                )
            if "accounts" in options.scenarios:
                tokens = Tokens(jwt_secret, 3600)
                reads = account_reads(options.population, tokens, host)
                scenarios["accounts"] = _load(port, options, reads, process=process)
            if "login" in options.scenarios:
                scenarios["login"] = _load(port, options, logins(options.population, host), process=process)
            report["server_rss_mb"] = server.resident_mb(process)

    for name, ceiling_name in (
        ("webhook", "ceiling_write"),
        ("webhook_redeliveries", "ceiling_write"),
        ("accounts", "ceiling_read"),
    ):
        if name in scenarios and ceiling_name in scenarios:
            scenarios[name]["ratio_to_ceiling"] = _ratio(
                scenarios[name]["rps"], scenarios[ceiling_name]["rps"]
            )
    for name in ("webhook", "webhook_redeliveries", "accounts", "login"):
        if name in scenarios and "generator" in scenarios:
            scenarios[name]["share_of_generator_ceiling"] = _ratio(
                scenarios[name]["rps"], scenarios["generator"]["rps"]
            )
    report["targets"] = targets(report)
    report["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return report


def targets(report: dict[str, Any]) -> dict[str, bool]:
    """Return the issue's targets that this report can judge, each met or not."""
    scenarios = report["scenarios"]
    met: dict[str, bool] = {}
    webhook = scenarios.get("webhook")
    if webhook and webhook.get("ratio_to_ceiling") is not None:
        met["webhook_at_least_50pct_of_ceiling_write"] = webhook["ratio_to_ceiling"] >= 0.5
    if webhook:
        met["webhook_p99_below_50ms"] = webhook["p99_ms"] < 50
        met["webhook_zero_errors"] = (
            webhook["errors"] == 0 and scenarios["webhook_redeliveries"]["errors"] == 0
        )
    if "sums_match" in report:
        met["sums_match"] = report["sums_match"]
    accounts = scenarios.get("accounts")
    if accounts and accounts.get("ratio_to_ceiling") is not None:
        met["accounts_at_least_10pct_of_ceiling_read"] = accounts["ratio_to_ceiling"] >= 0.1
    if "server_rss_mb" in report:
        met["every_server_process_below_100mb"] = all(mb < 100 for mb in report["server_rss_mb"].values())
    return met


def table(report: dict[str, Any]) -> str:
    """Return the report as a table for people."""
    rows = [("scenario", "rps", "p50 ms", "p99 ms", "errors", "ratio", "server CPU ms/request")]
    for name, figures in report["scenarios"].items():
        ratio = figures.get("ratio_to_ceiling")
        cpu = figures.get("server_cpu_ms_per_request")
        rows.append(
            (
                name,
                f"{figures['rps']:.0f}",
                f"{figures['p50_ms']:.1f}",
                f"{figures['p99_ms']:.1f}",
                str(figures["errors"]),
                "" if ratio is None else f"{ratio:.0%} of ceiling",
                "" if cpu is None else f"{cpu:.2f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]
    lines.insert(1, "| " + " | ".join("-" * width for width in widths) + " |")
    settings = report["settings"]
    lines.append("")
    lines.append(
        f"{settings['concurrency']} connections, {settings['duration_s']:g} s each, "
        f"{settings['workers']} worker(s), {settings['users']} users, {settings['accounts']} accounts, "
        f"{settings['events_seeded']} events seeded, {settings['database']} PostgreSQL, "
        f"{report['cpus']} CPUs, load {report['load_before']} -> {report['load_after']}"
    )
    if "sums_match" in report:
        lines.append(f"sums_match: {str(report['sums_match']).lower()} ({report['sums']})")
    if "server_rss_mb" in report:
        lines.append(f"server RSS after the run (MB): {report['server_rss_mb']}")
    lines.append(f"login: {settings['login_argon2']}")
    lines.append(
        "targets: "
        + ", ".join(f"{name}={'met' if ok else 'NOT met'}" for name, ok in report["targets"].items())
    )
    return "\n".join(lines)
