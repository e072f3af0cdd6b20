"""Bounded work per request, and smaller leaks: no statement runs forever, as_of by position is
an index lookup, a half-sent request does not keep its connection, replay prints no hash, the
generated JWT secret is never readable by others, a summary beyond the feed is refused."""

from __future__ import annotations

import os
import socket
import stat
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from falcon.testing import ASGIConductor
from psycopg_pool import AsyncConnectionPool

from ledger import db
from ledger.config import REPO_ROOT, Settings, kept_jwt_secret
from ledger.http.app import create_app
from ledger.projections import past
from ledger.projections.rebuild import replay
from tests.support import Person
from tests.support.servers import free_port, ledger_serve

READ_TIMEOUT_S = 1
CLOSE_LIMIT_S = 15


@pytest.fixture
async def impatient_pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = db.create_pool(db.serving_conninfo(database_url, statement_timeout_s=1), 1, 2, timeout_s=5)
    await pool.open(wait=True)
    yield pool
    await pool.close()


async def test_a_statement_that_runs_too_long_is_cancelled_and_answered_503(
    settings: Settings, impatient_pool: AsyncConnectionPool, person: Person, database_url: str
) -> None:
    app = create_app(settings, impatient_pool, pool_lifespan=False)
    async with (
        await psycopg.AsyncConnection.connect(database_url) as blocker,
        ASGIConductor(app) as client,
    ):
        await blocker.execute("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE")  # held until rollback
        started = time.monotonic()
        answer = await client.simulate_get("/user/accounts", headers=person.headers)
        waited = time.monotonic() - started
        await blocker.rollback()
    assert answer.status_code == 503, answer.text
    assert answer.json["error"] == "database_busy"
    assert answer.headers["Retry-After"] == "1"
    assert waited < CLOSE_LIMIT_S


async def test_balances_as_of_a_position_are_an_index_lookup_not_a_sum_over_the_log(
    pool: AsyncConnectionPool, person: Person
) -> None:
    async with db.connection(pool) as conn:
        cursor = await conn.execute(
            "EXPLAIN " + past.SELECT_ACCOUNTS_OF_USERS_AT_POSITION,
            {"user_ids": [person.user.id], "through_position": 10**9},
        )
        plan = "\n".join(row[0] for row in await cursor.fetchall())
    assert "Aggregate" not in plan, plan
    assert "payments_by_account" in plan, plan


def test_a_half_sent_request_is_closed_after_the_read_timeout(tmp_path: Path, server_url: str) -> None:
    database_url = db.create_database(server_url, "ledger_slowloris")
    try:
        env = {"LEDGER_DATABASE_URL": database_url, "LEDGER_REQUEST_READ_TIMEOUT_S": str(READ_TIMEOUT_S)}
        port = free_port()
        with ledger_serve(tmp_path, port, **env):
            partial_requests = [
                b"",  # connected, says nothing
                b"POST /webhook/payment HTTP/1.1\r\nHost: x\r\n",  # headers never end
                # the body never ends
                b"POST /webhook/payment HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n{",
            ]
            for sent in partial_requests:
                with socket.create_connection(("127.0.0.1", port)) as sock:
                    sock.sendall(sent)
                    sock.settimeout(CLOSE_LIMIT_S)
                    started = time.monotonic()
                    received = b""
                    while chunk := sock.recv(4096):
                        received += chunk
                    assert time.monotonic() - started < CLOSE_LIMIT_S
                    if received:
                        assert received.startswith(b"HTTP/1.1 408"), received
    finally:
        db.drop_database(server_url, database_url)


@pytest.fixture
def own(server_url: str) -> Iterator[str]:
    url = db.create_database(server_url, "ledger_redact")
    db.migrate(url, REPO_ROOT / "sql")
    yield url
    db.drop_database(server_url, url)


async def test_replay_prints_no_password_hash_in_its_differences(own: str) -> None:
    async with await psycopg.AsyncConnection.connect(own, autocommit=True) as conn:
        await conn.execute("UPDATE users SET full_name = 'Doctored' WHERE id = 1")
    async with await psycopg.AsyncConnection.connect(own, autocommit=True, prepare_threshold=None) as conn:
        report = await replay(conn)
    assert not report.equal
    printed = "\n".join(difference.row for difference in report.differences)
    assert "Doctored" in printed
    assert "$argon2" not in printed
    assert "sha256:" in printed


def test_the_generated_jwt_secret_is_never_readable_by_others(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """Created 0600, not created with the umask's mode and narrowed afterwards."""
    umask = os.umask(0)  # the widest mode a file can be created with
    try:
        monkeypatch.setattr(Path, "chmod", lambda *args, **kwargs: None)  # no narrowing afterwards
        kept_jwt_secret(tmp_path)
    finally:
        os.umask(umask)
    mode = stat.S_IMODE((tmp_path / "jwt_secret").stat().st_mode)
    assert mode == 0o600, oct(mode)


async def test_a_summary_through_a_cursor_beyond_the_feed_is_refused(
    client: ASGIConductor, admin: Person
) -> None:
    head = await client.simulate_get("/audit/summary", headers=admin.headers)
    xact_id, position = (int(part) for part in head.json["through"].split("-"))
    beyond = f"{xact_id + 10**6}-{position + 10**6}"
    refused = await client.simulate_get("/audit/summary", params={"through": beyond}, headers=admin.headers)
    assert refused.status_code == 400, refused.text
    assert refused.json["error"] == "invalid_query"
    assert refused.json["message"].startswith("through is beyond the feed's last event ("), refused.json
