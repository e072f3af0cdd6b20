"""The service behind PgBouncer in transaction mode (LEDGER_DATABASE_POOLER=transaction): the
webhook, login and admin flows through it, its serving sessions as the runtime role with their
statement timeout, and its refusal to serve when the pooler would lose either.

A throwaway cluster of its own, so that the login roles and their settings made here touch no
other test's server; PgBouncer pools few server connections, so that many client connections
share each one and anything that leaned on a session would show.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg
import psycopg.sql
import pytest

from bench.clusters import Cluster, PgBouncer, pgbouncer, throwaway_cluster
from ledger import db
from ledger.config import REPO_ROOT, TRANSACTION_POOLER
from tests.support import TEST_WEBHOOK_SECRET, delivery_body, ledger_cli, new_account_id, new_email
from tests.support.servers import free_port, ledger_process

STATEMENT_TIMEOUT_S = 2
SERVER_CONNECTIONS = 3  # PgBouncer's pool: fewer than the service's, so that they are shared
SERVING_LOGIN = "ledger_app"  # a member of ledger_runtime, with the role and timeout as its settings
BARE_LOGIN = "ledger_bare"  # a member of ledger_runtime, without them
DELIVERIES = 60
CREATE_LOGIN = psycopg.sql.SQL("CREATE ROLE {login} LOGIN IN ROLE ledger_runtime")
SET_LOGIN_DEFAULT = psycopg.sql.SQL("ALTER ROLE {login} IN DATABASE {database} SET {name} = {value}")
DROP_LOGIN = psycopg.sql.SQL("DROP ROLE IF EXISTS {login}")


@dataclass(frozen=True)
class Pooled:
    cluster: Cluster
    bouncer: PgBouncer
    database: str

    @property
    def owner_url(self) -> str:
        """The owner, straight to PostgreSQL (migrations never go through the pooler)."""
        return self.cluster.url(self.database)

    def through_pooler(self, login: str) -> str:
        return self.bouncer.url(login, self.database)


@pytest.fixture(scope="module")
def pooled() -> Iterator[Pooled]:
    with throwaway_cluster() as cluster:
        database = db.database_name(db.create_database(cluster.url(), "ledger_pooled"))
        db.migrate(cluster.url(database), REPO_ROOT / "sql")
        with psycopg.connect(cluster.url(database), autocommit=True) as conn:
            for login in (SERVING_LOGIN, BARE_LOGIN):
                conn.execute(CREATE_LOGIN.format(login=psycopg.sql.Identifier(login)))
            # The design under test: the serving login's own settings, which PostgreSQL applies to
            # every session PgBouncer opens for it (see ledger.db.pooled_session_refusals).
            for name, value in (
                ("role", "ledger_runtime"),
                ("statement_timeout", STATEMENT_TIMEOUT_S * 1000),
            ):
                conn.execute(
                    SET_LOGIN_DEFAULT.format(
                        login=psycopg.sql.Identifier(SERVING_LOGIN),
                        database=psycopg.sql.Identifier(database),
                        name=psycopg.sql.Identifier(name),
                        value=psycopg.sql.Literal(value),
                    )
                )
        with pgbouncer(
            "127.0.0.1", cluster.port, [SERVING_LOGIN, BARE_LOGIN, "postgres"], pool_size=SERVER_CONNECTIONS
        ) as bouncer:
            yield Pooled(cluster, bouncer, database)


def pooled_env(pooled: Pooled, tmp_path: Path, login: str = SERVING_LOGIN, **more: str) -> dict[str, str]:
    return {
        "LEDGER_DATABASE_URL": pooled.through_pooler(login),
        "LEDGER_OWNER_DATABASE_URL": pooled.owner_url,
        "LEDGER_DATABASE_POOLER": TRANSACTION_POOLER,
        "LEDGER_STATEMENT_TIMEOUT_S": str(STATEMENT_TIMEOUT_S),
        "LEDGER_WEBHOOK_SECRETS": TEST_WEBHOOK_SECRET.decode(),
        "LEDGER_JWT_SECRET": "pooler-test-" + uuid.uuid4().hex * 2,
        "LEDGER_DATA_DIR": str(tmp_path / "data"),
        **more,
    }


def test_webhook_login_and_admin_flows_work_through_pgbouncer_in_transaction_mode(
    pooled: Pooled, tmp_path: Path
) -> None:
    with ledger_process(tmp_path, free_port(), **pooled_env(pooled, tmp_path)) as (api, _):
        admin = login(api, "testadmin@example.com", "123456")
        email = new_email()
        created = httpx.post(
            f"{api}/users/create",
            headers=admin,
            json={"email": email, "full_name": "Pooled Person", "password": "pooled-pass", "is_admin": False},
        )
        assert created.status_code == 201, created.text
        user_id = created.json()["id"]
        person = login(api, email, "pooled-pass")

        # Deliveries at once from 8 senders, each sent twice: far more statements than the 3
        # server connections, each connection's statements repeated (psycopg would prepare them).
        accounts = [new_account_id(), new_account_id()]
        bodies = [
            delivery_body(user_id, accounts[n % 2], f"{n + 1}.{n % 100:02d}") for n in range(DELIVERIES)
        ]
        with ThreadPoolExecutor(8) as senders:
            first = list(senders.map(lambda body: post_delivery(api, body), bodies))
            again = list(senders.map(lambda body: post_delivery(api, body), bodies))
        assert [status for status, _ in first] == [201] * DELIVERIES, first
        assert [status for status, _ in again] == [200] * DELIVERIES, again
        assert all(answer["status"] == "already_processed" for _, answer in again)

        shown = httpx.get(f"{api}/user/accounts", headers=person)
        assert shown.status_code == 200, shown.text
        expected = {
            account: sum(Decimal(b["amount"]) for b in bodies if b["account_id"] == account)
            for account in accounts
        }
        assert {a["id"]: Decimal(str(a["balance"])) for a in shown.json()} == expected

        listed = httpx.get(f"{api}/users?limit=100", headers=admin)
        assert listed.status_code == 200, listed.text
        assert email in {user["email"] for user in listed.json()}
        updated = httpx.put(f"{api}/users/update/{user_id}", headers=admin, json={"full_name": "Renamed"})
        assert updated.status_code == 200, updated.text
        assert updated.json()["full_name"] == "Renamed"
        deleted = httpx.delete(f"{api}/users/delete/{user_id}", headers=admin)
        assert deleted.status_code == 200, deleted.text
        refused = httpx.post(f"{api}/login", json={"email": email, "password": "pooled-pass"})
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"]

    # The auditors' commands through the pooler too (their connections prepare nothing).
    through = pooled_env(pooled, tmp_path, "postgres", LEDGER_OWNER_DATABASE_URL="")
    verified = ledger_cli(through["LEDGER_DATABASE_URL"], "verify", **without_url(through))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "intact" in verified.stdout
    exported = ledger_cli(through["LEDGER_DATABASE_URL"], "export", **without_url(through))
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.count("PaymentReceived") == DELIVERIES
    replayed = ledger_cli(pooled.owner_url, "replay")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr


async def test_the_serving_pool_through_pgbouncer_runs_as_the_runtime_role_with_its_timeout(
    pooled: Pooled,
) -> None:
    conninfo = db.serving_conninfo(
        pooled.through_pooler(SERVING_LOGIN),
        statement_timeout_s=STATEMENT_TIMEOUT_S,
        pooler=TRANSACTION_POOLER,
    )
    pool = db.create_pool(conninfo, 8, 8, prepared_statements=False)
    await pool.open(wait=True)
    try:

        async def who() -> tuple[str, str]:
            async with db.connection(pool) as conn:
                cursor = await conn.execute("SELECT current_user, current_setting('statement_timeout')")
                row = await cursor.fetchone()
                assert row is not None
                return row[0], row[1]

        # Many transactions from 8 client connections over 3 server connections: each lands on
        # whichever server connection is free, and each finds the role and the timeout there.
        seen = await asyncio.gather(*(who() for _ in range(80)))
        assert set(seen) == {("ledger_runtime", f"{STATEMENT_TIMEOUT_S}s")}
        async with db.connection(pool) as conn:
            with pytest.raises(psycopg.errors.QueryCanceled):
                await conn.execute("SELECT pg_sleep(%(s)s)", {"s": STATEMENT_TIMEOUT_S + 2})
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute("DELETE FROM events")  # the runtime role may not, as directly
    finally:
        await pool.close()


def test_serving_through_pgbouncer_is_refused_when_the_role_or_the_timeout_would_be_lost(
    pooled: Pooled, tmp_path: Path
) -> None:
    bare = serve_refused(pooled_env(pooled, tmp_path, BARE_LOGIN))
    assert f"ALTER ROLE {BARE_LOGIN} IN DATABASE {pooled.database} SET role = 'ledger_runtime'" in bare
    assert f"SET statement_timeout = {STATEMENT_TIMEOUT_S * 1000}" in bare

    other_timeout = serve_refused(pooled_env(pooled, tmp_path, LEDGER_STATEMENT_TIMEOUT_S="7"))
    assert "SET statement_timeout = 7000" in other_timeout
    assert "SET role" not in other_timeout

    # Production's refusals hold behind the pooler: a superuser login is refused, by its name
    # on the server side (PgBouncer logs in as the client's user).
    superuser = serve_refused(
        pooled_env(
            pooled,
            tmp_path,
            "postgres",
            LEDGER_ENV="production",
            LEDGER_WEBHOOK_SECRETS="a-provider-secret-nobody-else-knows",
        )
    )
    assert "logs in as a superuser" in superuser

    # And migrations never go through it.
    migrate = subprocess.run(
        [sys.executable, "-m", "ledger", "migrate"],
        env=pooled_env(pooled, tmp_path, LEDGER_OWNER_DATABASE_URL=""),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert migrate.returncode == 2, migrate.stdout + migrate.stderr
    assert "LEDGER_OWNER_DATABASE_URL" in migrate.stderr


def login(api: str, email: str, password: str) -> dict[str, str]:
    answer = httpx.post(f"{api}/login", json={"email": email, "password": password})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def post_delivery(api: str, body: dict) -> tuple[int, dict]:
    answer = httpx.post(f"{api}/webhook/payment", json=body, timeout=30)
    return answer.status_code, answer.json()


def serve_refused(env: dict[str, str]) -> str:
    """Run `ledger serve` with env (and no other LEDGER_ variable); return its stderr once it has
    exited 2, refusing, before it listens."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")} | env
    finished = subprocess.run(
        [sys.executable, "-m", "ledger", "serve", "--port", str(free_port())],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 2, finished.stdout + finished.stderr
    return finished.stderr


def without_url(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != "LEDGER_DATABASE_URL"}
