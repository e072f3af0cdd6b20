"""Losing the primary, and reading off a standby: clusters of the tests' own, from Debian's
PostgreSQL 15 and pg_auto_failover packages (bench.clusters), run as the `postgres` user.

- The failover drill, smaller than `python -m bench failover`: no acknowledged payment lost,
  none credited twice, and no 500, across a lost primary.
- A commit whose wait for the synchronous standby is cancelled is not acknowledged.
- With a replica, the auditors' reads come from it, and the feed followed there has no gaps
  while writers commit on the primary.

Where pg_auto_failover is not installed these tests skip, except under CI (CI set), where they
fail: .ci/run installs it.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from falcon.testing import ASGIConductor
from psycopg.types.json import Jsonb

from bench import clusters, failover
from ledger import commands, db
from ledger.config import REPO_ROOT, Settings
from ledger.events.types import to_data
from ledger.http.app import create_app
from ledger.passwords import Passwords
from tests.support import (
    PASSWORD,
    TEST_WEBHOOK_SECRET,
    Person,
    create_user,
    delivery,
    delivery_body,
    ledger_cli,
    new_account_id,
)

WRITERS = 4
PAYMENTS_PER_WRITER = 60
FOLLOW_TIMEOUT_S = 60


@pytest.fixture(scope="module", autouse=True)
def _clusters_installed() -> None:
    missing = clusters.missing_binaries()
    if missing:
        message = f"apt-get install -y {' '.join(missing)} to run these tests"
        if os.environ.get("CI"):
            pytest.fail(message + "; .ci/run installs them, so under CI they must be there")
        pytest.skip(message)


def test_the_drill_loses_no_acknowledged_payment_and_credits_none_twice(tmp_path: Path) -> None:
    report = failover.drill(deliveries=100, concurrency=8, workers=2, log_dir=tmp_path)
    assert report["lost"] == 0 and report["double"] == 0, report
    assert report["acknowledged"] == report["credited_once"] == 100, report
    assert "500" not in report["statuses"], report
    assert report["sums_match"] and report["replay_equal"] and report["verify_intact"], report
    assert report["unavailable_s"] < failover.TARGET_UNAVAILABLE_S, report
    assert report["new_primary"] != report["lost_node"], report


# A primary whose commits wait for a standby that never confirms -------------------------------


@pytest.fixture
def primary_waiting_for_a_standby() -> Iterator[str]:
    """Yield the URL of a migrated ledger on a primary whose synchronous standby never comes."""
    with clusters.throwaway_cluster() as primary:
        with psycopg.connect(primary.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE ledger")
            url = primary.url("ledger")
            db.migrate(url, REPO_ROOT / "sql")
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = 'ghost'")
            conn.execute("SELECT pg_reload_conf()")
        yield url


SELECT_WAITING_FOR_THE_STANDBY = """
    SELECT pid FROM pg_stat_activity WHERE datname = 'ledger' AND wait_event = 'SyncRep'
"""


async def test_a_commit_the_standby_did_not_confirm_is_not_acknowledged(
    primary_waiting_for_a_standby: str, settings: Settings
) -> None:
    url = primary_waiting_for_a_standby
    pool = db.create_pool(db.serving_conninfo(url, statement_timeout_s=30), 1, 2)
    await pool.open(wait=True)
    try:
        client = ASGIConductor(create_app(settings, pool, pool_lifespan=False))
        body = json.dumps(delivery_body(1, new_account_id(), "12.34"))
        json_type = {"Content-Type": "application/json"}
        sent = asyncio.create_task(client.simulate_post("/webhook/payment", body=body, headers=json_type))
        # The payment is committed on the primary, which waits for the standby's confirmation;
        # a cancel request ends the wait: PostgreSQL then answers success, with a WARNING.
        with psycopg.connect(url, autocommit=True) as conn:
            for _ in range(100):
                waiting = conn.execute(SELECT_WAITING_FOR_THE_STANDBY).fetchall()
                if waiting:
                    break
                await asyncio.sleep(0.1)
            assert waiting, "the commit never waited for the standby"
            conn.execute("SELECT pg_cancel_backend(%(pid)s)", {"pid": waiting[0][0]})
        first = await sent
        assert first.status_code == 503, first.text
        assert first.json["error"] == "not_replicated" and first.headers["Retry-After"] == "1"

        # The primary stops waiting for a standby (as after a failover); the provider sends the
        # same delivery again: answered as already credited, and credited once.
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = ''")
            conn.execute("SELECT pg_reload_conf()")
        await asyncio.sleep(0.5)
        again = await client.simulate_post("/webhook/payment", body=body, headers=json_type)
        assert again.status_code == 200 and again.json["balance"] == again.json["amount"], again.text
    finally:
        await pool.close()


# A replica for the auditors --------------------------------------------------------------------


@pytest.fixture(scope="module")
def primary_and_standby() -> Iterator[tuple[str, str]]:
    """Yield the URLs of a migrated ledger on a primary and on its hot standby."""
    with clusters.primary_and_standby() as (primary, standby):
        with psycopg.connect(primary.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE ledger")
        db.migrate(primary.url("ledger"), REPO_ROOT / "sql")
        yield primary.url("ledger"), standby.url("ledger")


@pytest.fixture
async def replica_client(
    primary_and_standby: tuple[str, str], settings: Settings
) -> AsyncIterator[ASGIConductor]:
    primary_url, standby_url = primary_and_standby
    pool = db.create_pool(db.serving_conninfo(primary_url, statement_timeout_s=30), 1, 4)
    audit_pool = db.create_pool(db.serving_conninfo(standby_url, statement_timeout_s=30), 1, 4)
    await pool.open(wait=True)
    await audit_pool.open(wait=True)
    try:
        yield ASGIConductor(create_app(settings, pool, audit_pool=audit_pool, pool_lifespan=False))
    finally:
        await audit_pool.close()
        await pool.close()


async def _admin(client: ASGIConductor) -> Person:
    login = await client.simulate_post(
        "/login", json={"email": "testadmin@example.com", "password": "123456"}
    )
    assert login.status_code == 200, login.text
    return Person(None, login.json["access_token"])  # type: ignore[arg-type]


async def _write_payments(primary_url: str, writer: int) -> None:
    async with await psycopg.AsyncConnection.connect(primary_url, autocommit=True) as conn:
        for number in range(PAYMENTS_PER_WRITER):
            payment = delivery(1, 9_000 + writer, "1.00", f"feed-{writer}-{number}")
            if writer:
                await commands.receive_payment(conn, payment)
                continue
            # The slow writer: its event takes its position, then its transaction stays open
            # while the others commit events with later positions.
            async with conn.transaction():
                await conn.execute(
                    commands.RECEIVE_PAYMENT,
                    {
                        "transaction_id": payment.transaction_id,
                        "user_id": payment.user_id,
                        "account_id": payment.account_id,
                        "amount": payment.amount_value,
                        "delivery": Jsonb(to_data(payment)),
                    },
                )
                await conn.execute("SELECT pg_sleep(0.05)")


async def test_the_feed_on_the_standby_has_no_gaps_while_the_primary_writes(
    primary_and_standby: tuple[str, str], replica_client: ASGIConductor
) -> None:
    primary_url, _ = primary_and_standby
    admin = await _admin(replica_client)
    writers = asyncio.gather(*(_write_payments(primary_url, writer) for writer in range(WRITERS)))
    seen: list[int] = []
    after = "0-0"
    deadline = time.monotonic() + FOLLOW_TIMEOUT_S
    while time.monotonic() < deadline:
        page = await replica_client.simulate_get(
            "/events", params={"after": after, "limit": "7"}, headers=admin.headers
        )
        assert page.status_code == 200, page.text
        seen += [event["position"] for event in page.json["events"]]
        after = page.json["next"]
        if writers.done() and not page.json["events"]:
            with psycopg.connect(primary_url) as conn:
                positions = [row[0] for row in conn.execute("SELECT position FROM events").fetchall()]
            if len(seen) >= len(positions):
                break
        await asyncio.sleep(0.01)
    else:
        pytest.fail(f"the feed on the standby stopped at {after}, {len(seen)} events read")
    await writers
    assert len(seen) == len(set(seen)), "an event was read twice"
    assert sorted(seen) == sorted(positions), "the feed on the standby skipped an event"


async def test_auditors_read_the_replica_and_users_read_the_primary(
    primary_and_standby: tuple[str, str], replica_client: ASGIConductor, settings: Settings
) -> None:
    primary_url, standby_url = primary_and_standby
    admin = await _admin(replica_client)
    passwords = Passwords(settings.argon2)
    with psycopg.connect(standby_url, autocommit=True) as standby:
        standby.execute("SELECT pg_wal_replay_pause()")
        try:
            async with await psycopg.AsyncConnection.connect(primary_url, autocommit=True) as conn:
                user = await create_user(conn, passwords)
                await commands.receive_payment(conn, delivery(user.id, new_account_id(), "5.00", "paused-1"))
            login = await replica_client.simulate_post(
                "/login", json={"email": user.email, "password": PASSWORD}
            )
            accounts = await replica_client.simulate_get(
                "/user/accounts", headers={"Authorization": f"Bearer {login.json['access_token']}"}
            )
            assert [a["balance"] for a in accounts.json] == [5], "a user reads their own write"
            payments = await replica_client.simulate_get("/audit/payments", headers=admin.headers)
            assert payments.status_code == 200
            assert "paused-1" not in payments.text, "the auditors' read came from the primary"
            exported = ledger_cli(primary_url, "export", LEDGER_REPLICA_URL=standby_url)
            assert exported.returncode == 0 and "paused-1" not in exported.stdout, exported.stderr
        finally:
            standby.execute("SELECT pg_wal_replay_resume()")
    verified = ledger_cli(
        primary_url,
        "verify",
        LEDGER_REPLICA_URL=standby_url,
        LEDGER_WEBHOOK_SECRETS=TEST_WEBHOOK_SECRET.decode(),
    )
    assert verified.returncode == 0 and "intact" in verified.stdout, verified.stdout + verified.stderr
