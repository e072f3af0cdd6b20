"""A public peer for the transfers: pgledger (github.com/pgr0ss/pgledger), a double-entry ledger
written entirely in PostgreSQL functions, measured by pgbench calling pgledger_create_transfer
directly: no HTTP, no idempotency, no hash chain. Not part of this repository: `--pgledger`
names its SQL files (its pgledger.sql, after the uuid_to_ulid function it vendors), which are
installed into a database of their own on the same server, beside the bench's."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psycopg

from ledger import db

# As many accounts as the bench's population has, each allowed below zero, so that a random
# transfer never fails for lack of funds; bench_accounts numbers them for pgbench.
CREATE_ACCOUNTS = (
    "CREATE TABLE bench_accounts (n int PRIMARY KEY, id text NOT NULL UNIQUE)",
    """
    INSERT INTO bench_accounts (n, id)
    SELECT g.n, a.id
    FROM generate_series(1, %(accounts)s) AS g (n)
    CROSS JOIN LATERAL pgledger_create_account('bench_' || g.n, 'USD', allow_negative_balance => true) AS a
    """,
)


@contextmanager
def pgledger_database(server_url: str, sql_files: Sequence[Path], accounts: int) -> Iterator[str]:
    """Yield the URL of a new database holding pgledger and `accounts` accounts; drop it afterwards."""
    url = db.create_database(server_url, "bench_pgledger")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            with conn.transaction():
                for path in sql_files:
                    conn.execute(path.read_text())  # type: ignore[arg-type]  # the peer's own SQL
            for statement in CREATE_ACCOUNTS:
                conn.execute(statement, {"accounts": accounts})
            conn.execute("ANALYZE")
        yield url
    finally:
        db.drop_database(server_url, url)


def transfers_script(accounts: int) -> str:
    """A cent from one random account to another, by pgledger_create_transfer."""
    return (
        f"\\set a random(1, {accounts})\n"
        f"\\set b random(1, {accounts - 1})\n"
        "\\set b :b + case when :b >= :a then 1 else 0 end\n"
        "SELECT * FROM pgledger_create_transfer((SELECT id FROM bench_accounts WHERE n = :a),"
        " (SELECT id FROM bench_accounts WHERE n = :b), 0.01);\n"
    )


def sum_of_balances(url: str) -> object:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT sum(balance) FROM pgledger_accounts").fetchone()
    return row[0] if row else None
