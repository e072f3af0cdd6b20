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
from collections import deque
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import simplejson

from bench import ceiling, load, peer, pooler, seed, server
from bench.figures import Figures, Slice, machine_cpu, markdown_table, median_or_none, ratio, ratios_per_round
from bench.seed import Population
from ledger import db, signatures
from ledger.config import REPO_ROOT, Argon2Cost
from ledger.http.auth import Tokens
from ledger.projections.users import LoginRecord

SCENARIOS = ("generator", "ceiling", "webhook", "accounts", "login", "transfers")
ALL = SCENARIOS[:-1]  # `bench all`: transfers run on their own (`bench transfers`)
TRANSFER_OK = frozenset({201})
OPPOSITE_SHARE = 0.10  # transfers sent the opposite way of a recent one: the same pairs, both ways
FUNDS = Decimal("1000000.00")  # paid into each seeded account before the transfers
WEBHOOK_OK = frozenset({200, 201})
READ_OK = frozenset({200})
REDELIVERY_SHARE = 0.10
PREPARED_PER_S = 5_000  # deliveries signed ahead for each second of a run: twice any rate seen
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
    rounds: int = 3
    # webhook: also run it through PgBouncer (transaction mode), in the same rounds.
    through_pgbouncer: bool = False
    webhook_batch_max: int | None = None  # LEDGER_WEBHOOK_BATCH_MAX of `ledger serve`; None: its default
    transfer_batch_max: int | None = None  # LEDGER_TRANSFER_BATCH_MAX, likewise
    # transfers: pgledger's SQL files (bench.peer), to run it in the same rounds; none: not run.
    pgledger_files: tuple[Path, ...] = ()


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
    url = db.create_database(server_url, "bench")
    try:
        db.migrate(url, REPO_ROOT / "sql")
        yield url
    finally:
        db.drop_database(server_url, url)


# Requests -------------------------------------------------------------------------------------


def _amount_text(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


class Deliveries:
    """Signed webhook deliveries with new transaction ids, and optionally re-deliveries of
    earlier accepted ones; counts what the service accepted, in cents.

    prepare() signs deliveries ahead of a run (the issue's "pre-signed bodies"), so that the
    generator spends its time in the run sending, not signing: its CPU comes out of the same
    two cores as the server's. A run that outpaces what was prepared signs the rest as it goes.
    """

    def __init__(self, population: Population, secret: bytes, host: str, redelivery_share: float) -> None:
        self._population = population
        self._secret = secret
        self._host = host
        self._redelivery_share = redelivery_share
        self._run = uuid.uuid4().hex[:8]
        self._count = 0
        self._accepted_requests: list[bytes] = []
        self._prepared: deque[tuple[bytes, Any]] = deque()
        self.accepted_cents = 0
        self.redeliveries_sent = 0
        self.redeliveries_answered_200 = 0

    def prepare(self, count: int) -> None:
        """Sign deliveries until count of them wait to be sent."""
        while len(self._prepared) < count:
            self._prepared.append(self._new_delivery())

    def next_request(self) -> tuple[bytes, Any]:
        if self._accepted_requests and random.random() < self._redelivery_share:
            self.redeliveries_sent += 1
            return random.choice(self._accepted_requests), None
        return self._prepared.popleft() if self._prepared else self._new_delivery()

    def _new_delivery(self) -> tuple[bytes, Any]:
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


class Transfers:
    """POST /transfers between the seeded users' accounts, each under a new Idempotency-Key:
    from one of the token's user's accounts to one of another user's, and a share of them the
    opposite way of a recent transfer (the same two accounts, the other direction)."""

    def __init__(self, population: Population, tokens: Tokens, host: str) -> None:
        self._population = population
        self._host = host
        self._headers = {
            user_id: f"Bearer {tokens.issue(LoginRecord(user_id, '', 1))}"
            for user_id in population.user_ids()
        }
        self._recent: deque[tuple[int, int, int, int]] = deque(maxlen=1000)
        self._prepared: deque[tuple[bytes, Any]] = deque()
        self._run = uuid.uuid4().hex[:8]
        self._count = 0

    def prepare(self, count: int) -> None:
        while len(self._prepared) < count:
            self._prepared.append(self._new_transfer())

    def next_request(self) -> tuple[bytes, Any]:
        return self._prepared.popleft() if self._prepared else self._new_transfer()

    def _new_transfer(self) -> tuple[bytes, Any]:
        self._count += 1
        if self._recent and random.random() < OPPOSITE_SHARE:
            to_user, to_account, from_user, from_account = random.choice(self._recent)
        else:
            users = self._population.user_ids()
            from_user = random.choice(users)
            to_user = random.choice(users[:-1])
            to_user = to_user if to_user < from_user else to_user + 1  # another user
            from_account = random.choice(self._population.account_ids(from_user))
            to_account = random.choice(self._population.account_ids(to_user))
            self._recent.append((from_user, from_account, to_user, to_account))
        body = (
            f'{{"from_account_id":{from_account},"to_account_id":{to_account},'
            f'"amount":"{_amount_text(random.randint(1, 100))}"}}'
        ).encode()
        headers = {
            "Authorization": self._headers[from_user],
            "Idempotency-Key": f"bench-{self._run}-{self._count}",
        }
        return load.request_bytes("POST", "/transfers", self._host, body, headers=headers), None


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


def measure_load(
    port: int,
    options: Options,
    duration_s: float,
    next_request: load.NextRequest,
    on_answer: load.OnAnswer | None = None,
    process: subprocess.Popen[bytes] | None = None,
    ok_statuses: frozenset[int] = READ_OK,
) -> Slice:
    """Run the generator against port for duration_s; return what it saw and what it cost."""
    loop = load.new_event_loop()
    cpu_before = server.cpu_s(process) if process else 0.0
    try:
        with machine_cpu() as machine:
            result = loop.run_until_complete(
                load.run(
                    HOST,
                    port,
                    options.concurrency,
                    duration_s,
                    next_request,
                    on_answer or (lambda tag, status, body: None),
                )
            )
    finally:
        loop.close()
    return Slice(
        duration_s=result.duration_s,
        latencies_ms=result.latencies_ms,
        errors=result.errors(ok_statuses),
        machine=machine,
        statuses=result.statuses,
        server_cpu_s=server.cpu_s(process) - cpu_before if process else None,
        generator_cpu_s=result.generator_cpu_s,
    )


# The run --------------------------------------------------------------------------------------

# What runs in each round, in this order; generator and login run once (see run()).
ROUND_SCENARIOS = (
    "yardstick_credit",
    "ceiling_write",
    "ceiling_read",
    "webhook",
    "webhook_pgbouncer",
    "webhook_redeliveries",
    "accounts",
    "ceiling_transfers",
    "transfers",
    "pgledger_transfers",
)
# The webhook's share of the smallest idempotent credit (bench.ceiling's yardstick).
SHARES_OF_YARDSTICK = ("webhook", "webhook_redeliveries", "webhook_pgbouncer")
RATIOS = {
    "webhook": "ceiling_write",
    "webhook_pgbouncer": "ceiling_write",
    "webhook_redeliveries": "ceiling_write",
    "accounts": "ceiling_read",
    "transfers": "ceiling_transfers",
}
# The transfers over HTTP against a public peer's SQL alone (bench.peer).
RATIOS_TO_PEER = {"transfers": "pgledger_transfers", "ceiling_transfers": "pgledger_transfers"}


def run(options: Options, log_dir: Path) -> dict[str, Any]:
    """Run the chosen scenarios on a fresh, seeded database; return the report.

    The ceiling and the service take turns: each round runs pgbench's write and read ceilings,
    then the webhook, its re-delivery variant and the accounts read against `ledger serve`
    (which idles, started, while pgbench runs), each for duration/rounds seconds. A scenario's
    figure sums its rounds, and each ratio is also given round by round, so that a slowdown of
    the shared machine halfway through lowers both sides of a ratio instead of one.
    """
    webhook_secret = b"bench-webhook-" + secrets.token_hex(8).encode()
    jwt_secret = secrets.token_hex(32).encode()
    cost = Argon2Cost()
    slice_s = options.duration_s / options.rounds
    report: dict[str, Any] = {
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "settings": {
            "duration_s": options.duration_s,
            "webhook_batch_max": options.webhook_batch_max or "the default",
            "transfer_batch_max": options.transfer_batch_max or "the default",
            "rounds": options.rounds,
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
                "bench.load: asyncio + uvloop protocol callbacks, raw HTTP/1.1 keep-alive connections in "
                "the bench process; 'generator' is the same generator against a server that answers at once"
            ),
        },
        "scenarios": {},
    }
    figures: dict[str, Figures] = {}
    with (
        database_server(options.database_url) as (server_url, kind),
        fresh_database(server_url) as url,
        ExitStack() as stack_of_databases,
    ):
        report["settings"]["database"] = kind
        started = time.monotonic()
        seed.seed(url, options.population, options.events, webhook_secret)
        if "transfers" in options.scenarios:
            seed.fund(url, options.population, webhook_secret, FUNDS)
        if "ceiling" in options.scenarios:
            ceiling.create_yardstick(url)
        peer_url = None
        if "transfers" in options.scenarios and options.pgledger_files:
            peer_url = stack_of_databases.enter_context(
                peer.pgledger_database(server_url, options.pgledger_files, options.population.accounts)
            )
            # One slice of transfers through pgledger first, unmeasured: a new pgledger's first
            # seconds run well below its pace afterwards, which would flatter the service.
            warm_up = peer.transfers_script(options.population.accounts)
            ceiling.run_pgbench(peer_url, warm_up, options.concurrency, slice_s, {})
        report["settings"]["seed_s"] = round(time.monotonic() - started, 1)

        if "generator" in options.scenarios:
            port = server.free_port()
            with server.trivial_server(port, log_dir / "trivial.log"):
                figures["generator"] = Figures()
                trivial = trivial_requests(f"{HOST}:{port}")
                figures["generator"].add(measure_load(port, options, options.duration_s, trivial))

        port = server.free_port()
        host = f"{HOST}:{port}"
        pgbench_run = uuid.uuid4().hex[:8]
        deliveries = {
            "webhook": Deliveries(options.population, webhook_secret, host, 0.0),
            "webhook_redeliveries": Deliveries(options.population, webhook_secret, host, REDELIVERY_SHARE),
        }
        reads = account_reads(options.population, Tokens(jwt_secret, 3600), host)
        transfers = Transfers(options.population, Tokens(jwt_secret, 3600), host)
        serves = {"webhook", "accounts", "login", "transfers"} & set(options.scenarios)
        pooled_port = server.free_port()
        processes: dict[str, subprocess.Popen[bytes] | None] = {}
        if options.through_pgbouncer and "webhook" in options.scenarios:
            deliveries["webhook_pgbouncer"] = Deliveries(
                options.population, webhook_secret, f"{HOST}:{pooled_port}", 0.0
            )
        with ExitStack() as stack:
            process = stack.enter_context(
                server.ledger_serve(
                    url,
                    port,
                    options.workers,
                    jwt_secret,
                    webhook_secret,
                    log_dir / "ledger-serve.log",
                    **_serve_env(options),
                )
                if serves
                else nullcontext()
            )
            if "webhook_pgbouncer" in deliveries:
                # A second `ledger serve`, the same in all but its way to PostgreSQL; it idles
                # while the first one is measured, and the other way round.
                pooled_url = stack.enter_context(pooler.pooled_login(url))
                processes["webhook_pgbouncer"] = stack.enter_context(
                    server.ledger_serve(
                        pooled_url,
                        pooled_port,
                        options.workers,
                        jwt_secret,
                        webhook_secret,
                        log_dir / "ledger-serve-pgbouncer.log",
                        LEDGER_OWNER_DATABASE_URL=url,
                        LEDGER_DATABASE_POOLER="transaction",
                        LEDGER_STATEMENT_TIMEOUT_S=str(pooler.STATEMENT_TIMEOUT_S),
                        **_serve_env(options),
                    )
                )
                report["settings"]["pgbouncer"] = pooler.DESCRIPTION
            balances_gained = Decimal(0)  # by the webhook rounds alone
            for round_number in range(options.rounds):
                for name in _round_order(round_number):
                    if _scenario_of(name) not in options.scenarios:
                        continue
                    if name == "webhook_pgbouncer" and name not in deliveries:
                        continue  # without --through-pgbouncer
                    if name == "pgledger_transfers" and peer_url is None:
                        continue  # without --pgledger
                    server_cpu_before = server.cpu_s(process) if process else 0.0
                    if name == "ceiling_write":
                        script = ceiling.webhook_script(options.population)
                        # A run id for each round: pgbench numbers its transactions from 0 again.
                        variables = {
                            "n": "0",
                            "run": f"{pgbench_run}r{round_number}",
                            "secret": webhook_secret.decode(),
                        }
                        measured = ceiling.run_pgbench(url, script, options.concurrency, slice_s, variables)
                    elif name == "yardstick_credit":
                        script = ceiling.yardstick_script(options.population)
                        variables = {"n": "0", "run": f"{pgbench_run}y{round_number}"}
                        measured = ceiling.run_pgbench(url, script, options.concurrency, slice_s, variables)
                    elif name == "ceiling_read":
                        script = ceiling.accounts_script(options.population)
                        measured = ceiling.run_pgbench(url, script, options.concurrency, slice_s, {})
                    elif name == "ceiling_transfers":
                        script = ceiling.transfers_script(options.population)
                        variables = {"n": "0", "run": f"{pgbench_run}t{round_number}"}
                        measured = ceiling.run_pgbench(url, script, options.concurrency, slice_s, variables)
                    elif name == "pgledger_transfers":
                        assert peer_url is not None
                        script = peer.transfers_script(options.population.accounts)
                        measured = ceiling.run_pgbench(peer_url, script, options.concurrency, slice_s, {})
                    elif name == "transfers":
                        transfers.prepare(round(slice_s * PREPARED_PER_S))
                        measured = measure_load(
                            port, options, slice_s, transfers.next_request, None, process, TRANSFER_OK
                        )
                    elif name in deliveries:
                        chosen = deliveries[name]
                        chosen.prepare(round(slice_s * PREPARED_PER_S))
                        balances_before, _, _ = seed.totals(url)
                        pooled = name == "webhook_pgbouncer"
                        measured = measure_load(
                            pooled_port if pooled else port,
                            options,
                            slice_s,
                            chosen.next_request,
                            chosen.on_answer,
                            processes[name] if pooled else process,
                            WEBHOOK_OK,
                        )
                        balances_gained += seed.totals(url)[0] - balances_before
                    else:
                        measured = measure_load(port, options, slice_s, reads, process=process)
                    if name.startswith(("ceiling", "yardstick")) and process is not None:
                        # `ledger serve` waits, started, while pgbench runs: what it spent then
                        # shows that it took next to nothing from the ceiling.
                        measured.server_cpu_s = server.cpu_s(process) - server_cpu_before
                    figures.setdefault(name, Figures()).add(measured)
            if "login" in options.scenarios:
                figures["login"] = Figures()
                login_requests = logins(options.population, host)
                figures["login"].add(
                    measure_load(port, options, options.duration_s, login_requests, process=process)
                )
            if process is not None:
                report["server_rss_mb"] = server.resident_mb(process)
        balances_total, logged, _ = seed.totals(url)

        scenarios: dict[str, Any] = report["scenarios"]
        for name in (
            "yardstick_credit",
            "ceiling_write",
            "ceiling_read",
            "generator",
            *ROUND_SCENARIOS[2:6],
            "login",
            *ROUND_SCENARIOS[6:],
        ):
            if name in figures:
                scenarios[name] = figures[name].summary()
        if "ceiling_write" in figures:
            # Every pgbench delivery had a new transaction id, so each one was credited, as
            # each of the service's is: the ceiling did the same work per delivery.
            scenarios["ceiling_write"]["credited"] = seed.count_payments_like(url, f"pgb-{pgbench_run}r%")
        if "webhook" in options.scenarios:
            redeliveries = deliveries["webhook_redeliveries"]
            scenarios["webhook_redeliveries"]["redeliveries_sent"] = redeliveries.redeliveries_sent
            scenarios["webhook_redeliveries"]["redeliveries_answered_200"] = (
                redeliveries.redeliveries_answered_200
            )
            accepted = sum(Decimal(chosen.accepted_cents) / 100 for chosen in deliveries.values())
            report["sums"] = {
                "balances_gained": str(balances_gained),
                "accepted_amounts": str(accepted),
                "balances_total": str(balances_total),
                "payments_in_log_total": str(logged),
            }
            # What the webhook rounds added is what the service answered 201 for, and every
            # balance (pgbench's credits included) is the sum of the payments in the log.
            report["sums_match"] = balances_gained == accepted and balances_total == logged
        if "transfers" in options.scenarios:
            # Transfers move money and create none: the users' balances are still the payments
            # in the log, and every balance, the clearing account's included, sums to zero.
            ledger_total = seed.ledger_total(url)
            report.setdefault("sums", {}).update(
                {
                    "balances_total": str(balances_total),
                    "payments_in_log_total": str(logged),
                    "ledger_total": str(ledger_total),
                }
            )
            report["sums_match"] = (
                report.get("sums_match", True) and balances_total == logged and ledger_total == 0
            )

    for name, ceiling_name in RATIOS.items():
        if name in figures and ceiling_name in figures:
            scenarios[name]["ratio_to_ceiling"] = ratio(figures[name].rps, figures[ceiling_name].rps)
            per_round = ratios_per_round(figures[name], figures[ceiling_name])
            scenarios[name]["ratio_per_round"] = per_round
            scenarios[name]["median_ratio_of_rounds"] = median_or_none(per_round)
    for name, peer_name in RATIOS_TO_PEER.items():
        if name in figures and peer_name in figures:
            scenarios[name]["ratio_to_pgledger"] = ratio(figures[name].rps, figures[peer_name].rps)
            scenarios[name]["ratio_to_pgledger_per_round"] = ratios_per_round(
                figures[name], figures[peer_name]
            )
    for name in SHARES_OF_YARDSTICK:
        if name in figures and "yardstick_credit" in figures:
            scenarios[name]["share_of_yardstick"] = ratio(figures[name].rps, figures["yardstick_credit"].rps)
            scenarios[name]["share_of_yardstick_per_round"] = ratios_per_round(
                figures[name], figures["yardstick_credit"]
            )
    if "webhook_pgbouncer" in figures:
        # The cost of the pooler: the same deliveries, through PgBouncer, over straight to PostgreSQL.
        pooled = scenarios["webhook_pgbouncer"]
        pooled["ratio_to_direct"] = ratio(figures["webhook_pgbouncer"].rps, figures["webhook"].rps)
        pooled["ratio_to_direct_per_round"] = ratios_per_round(
            figures["webhook_pgbouncer"], figures["webhook"]
        )
    for name in ("webhook", "webhook_redeliveries", "accounts", "login"):
        if name in figures and "generator" in figures:
            scenarios[name]["share_of_generator_ceiling"] = ratio(figures[name].rps, figures["generator"].rps)
    report["targets"] = targets(report)
    report["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return report


def _serve_env(options: Options) -> dict[str, str]:
    env = {}
    if options.webhook_batch_max is not None:
        env["LEDGER_WEBHOOK_BATCH_MAX"] = str(options.webhook_batch_max)
    if options.transfer_batch_max is not None:
        env["LEDGER_TRANSFER_BATCH_MAX"] = str(options.transfer_batch_max)
    return env


def _round_order(round_number: int) -> tuple[str, ...]:
    """Return the parts of a round in their order: the webhook and its PgBouncer variant swap
    places every other round, so that neither is always the one that runs first."""
    if round_number % 2 == 0:
        return ROUND_SCENARIOS
    swapped = {"webhook": "webhook_pgbouncer", "webhook_pgbouncer": "webhook"}
    return tuple(swapped.get(name, name) for name in ROUND_SCENARIOS)


def _scenario_of(name: str) -> str:
    """Return the scenario a round's part belongs to (the command line's names)."""
    if name.endswith("transfers"):
        return "transfers"
    if name.startswith(("ceiling", "yardstick")):
        return "ceiling"
    return "webhook" if name.startswith("webhook") else name


def targets(report: dict[str, Any]) -> dict[str, bool]:
    """Return the issue's targets that this report can judge, each met or not."""
    scenarios = report["scenarios"]
    met: dict[str, bool] = {}
    webhook = scenarios.get("webhook")
    if webhook and webhook.get("share_of_yardstick") is not None:
        met["webhook_at_least_25pct_of_yardstick"] = webhook["share_of_yardstick"] >= 0.25
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
    transfers = scenarios.get("transfers")
    if transfers:
        met["transfers_zero_errors"] = transfers["errors"] == 0
    if "server_rss_mb" in report:
        met["every_server_process_below_100mb"] = all(mb < 100 for mb in report["server_rss_mb"].values())
    return met


def table(report: dict[str, Any]) -> str:
    """Return the report as a table for people."""
    rows = [
        (
            "scenario",
            "rps",
            "p50 ms",
            "p99 ms",
            "errors",
            "ratio",
            "ratio per round",
            "share of yardstick",
            "server CPU ms/req",
            "machine CPU ms/req",
            "idle",
        )
    ]
    for name, figures in report["scenarios"].items():
        ratio_to_ceiling = figures.get("ratio_to_ceiling")
        per_round = figures.get("ratio_per_round")
        cpu = figures.get("server_cpu_ms_per_request")
        idle = figures.get("machine_idle_share")
        share = figures.get("share_of_yardstick")
        rows.append(
            (
                name,
                f"{figures['rps']:.0f}",
                f"{figures['p50_ms']:.1f}",
                f"{figures['p99_ms']:.1f}",
                str(figures["errors"]),
                "" if ratio_to_ceiling is None else f"{ratio_to_ceiling:.0%} of ceiling",
                "" if per_round is None else " ".join(f"{r:.0%}" for r in per_round if r is not None),
                "" if share is None else f"{share:.0%}",
                "" if cpu is None else f"{cpu:.2f}",
                f"{figures['machine_cpu_ms_per_request']:.2f}",
                "" if idle is None else f"{idle:.0%}",
            )
        )
    lines = markdown_table(rows)
    settings = report["settings"]
    lines.append("")
    lines.append(
        f"{settings['concurrency']} connections, {settings['duration_s']:g} s each in "
        f"{settings['rounds']} rounds, {settings['workers']} worker(s), {settings['users']} users, "
        f"{settings['accounts']} accounts, "
        f"{settings['events_seeded']} events seeded, {settings['database']} PostgreSQL, "
        f"{report['cpus']} CPUs, load {report['load_before']} -> {report['load_after']}"
    )
    pooled = report["scenarios"].get("webhook_pgbouncer")
    if pooled:
        per_round = " ".join(f"{r:.0%}" for r in pooled["ratio_to_direct_per_round"] if r is not None)
        lines.append(
            f"webhook through PgBouncer: {pooled['ratio_to_direct']:.0%} of direct (rounds: {per_round})"
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
