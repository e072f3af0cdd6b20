"""PgBouncer in front of the bench's database, for `python -m bench webhook --through-pgbouncer`:
a serving login of its own whose settings give every pooled session the runtime role and the
statement timeout (as the README's "Behind PgBouncer" sets up), and Debian's pgbouncer in
transaction mode, started and stopped as the tests start theirs (bench.clusters).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import psycopg.sql
from psycopg.conninfo import conninfo_to_dict

from bench.clusters import pgbouncer
from ledger import db
from ledger.config import Settings

# Fewer server connections than the two workers' pools hold (2 x 20), so that they are shared,
# as behind a real pooler; and few enough that pgbench's 32, the direct server's 40 and these fit
# in a default max_connections (100) beside whatever else uses the machine's PostgreSQL.
SERVER_CONNECTIONS = 10
STATEMENT_TIMEOUT_S = Settings.statement_timeout_s  # the service's default
DESCRIPTION = (
    f"Debian's PgBouncer, transaction pooling, {SERVER_CONNECTIONS} server connections, in front of the "
    "same PostgreSQL; the second `ledger serve` has LEDGER_DATABASE_POOLER=transaction"
)
CREATE_LOGIN = psycopg.sql.SQL("CREATE ROLE {login} LOGIN IN ROLE {runtime}")
SET_LOGIN_DEFAULT = psycopg.sql.SQL("ALTER ROLE {login} IN DATABASE {database} SET {name} = {value}")
DROP_LOGIN = psycopg.sql.SQL("DROP ROLE IF EXISTS {login}")


@contextmanager
def pooled_login(database_url: str) -> Iterator[str]:
    """Yield the URL of database_url's database through a PgBouncer, as a serving login of its
    own; stop PgBouncer and drop the login afterwards. Raise ValueError when the server is not
    reached over TCP (an embedded PostgreSQL listens on a unix socket only)."""
    params = conninfo_to_dict(database_url)
    host, port = str(params.get("host") or ""), int(params.get("port") or 5432)
    if not host or host.startswith("/"):
        raise ValueError("--through-pgbouncer needs --database-url of a PostgreSQL reached over TCP")
    database = db.database_name(database_url)
    name = f"bench_pooled_{uuid.uuid4().hex[:8]}"
    login = psycopg.sql.Identifier(name)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(CREATE_LOGIN.format(login=login, runtime=psycopg.sql.Identifier(db.RUNTIME_ROLE)))
        for setting, value in (
            ("role", db.RUNTIME_ROLE),
            ("statement_timeout", db.statement_timeout_ms(STATEMENT_TIMEOUT_S)),
        ):
            conn.execute(
                SET_LOGIN_DEFAULT.format(
                    login=login,
                    database=psycopg.sql.Identifier(database),
                    name=psycopg.sql.Identifier(setting),
                    value=psycopg.sql.Literal(value),
                )
            )
    try:
        with pgbouncer(host, port, [name], pool_size=SERVER_CONNECTIONS) as bouncer:
            yield bouncer.url(name, database)
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(DROP_LOGIN.format(login=login))
