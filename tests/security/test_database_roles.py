"""The log can only grow, even for the service: it serves as a runtime role that owns nothing
and changes projections only through functions that append their event in the same
transaction. Before, migrations and requests shared the owner of `events`, which could
disable the append-only trigger and rewrite past."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import errors as pg_errors
from psycopg_pool import AsyncConnectionPool

from ledger import db
from ledger.audit import export
from ledger.audit.feed import START
from ledger.audit.verify import verify
from tests.support import as_login, delivery_body, new_account_id, webhooks_for_tests

# What the runtime role must never do, each tried on its own.
FORBIDDEN = {
    "update an event": "UPDATE events SET data = data WHERE position = 1",
    "delete an event": "DELETE FROM events WHERE position = 1",
    "truncate the log": "TRUNCATE events",
    "disable the append-only trigger": "ALTER TABLE events DISABLE TRIGGER events_refuse_update_delete",
    "drop the append-only trigger": "DROP TRIGGER events_refuse_update_delete ON events",
    "alter the log": "ALTER TABLE events ADD COLUMN note text",
    "append an event directly": (
        "INSERT INTO events (stream, type, data) VALUES ('user-1', 'UserDeleted', '{\"user_id\": 1}')"
    ),
    "credit a balance directly": "UPDATE accounts SET balance = balance + 1000000",
    "open an account directly": "INSERT INTO accounts (id, user_id, balance) VALUES (77, 1, 5)",
    "record a payment directly": (
        "INSERT INTO payments (id, transaction_id, user_id, account_id, amount, balance_after, created_at) "
        "VALUES (-1, 'x', 1, 1, 1, 1, now())"
    ),
    "make oneself admin directly": "UPDATE users SET is_admin = true",
    "move a stream's head": "UPDATE stream_heads SET version = version + 1",
    "forget a spent signature": "DELETE FROM delivery_keys",
    "replace a function": (
        "CREATE OR REPLACE FUNCTION redacted(data jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT data'"
    ),
    "create a table": "CREATE TABLE public.mine (id int)",
}


@pytest.fixture(scope="module")
def runtime(database_url: str, runtime_login: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(as_login(database_url, runtime_login), autocommit=True) as conn:
        yield conn


@pytest.mark.parametrize("attempt", sorted(FORBIDDEN))
def test_the_runtime_role_cannot(runtime: psycopg.Connection, attempt: str) -> None:
    with pytest.raises(pg_errors.InsufficientPrivilege):
        runtime.execute(FORBIDDEN[attempt])


def test_the_runtime_role_is_no_superuser_and_owns_nothing(runtime: psycopg.Connection) -> None:
    row = runtime.execute(
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles "
        "WHERE rolname = 'ledger_runtime'"
    ).fetchone()
    assert row == (False, False, False, False)
    owned = runtime.execute(
        """
        SELECT (SELECT count(*) FROM pg_class
                WHERE pg_has_role(relowner, 'MEMBER') AND relnamespace = 'public'::regnamespace)
             + (SELECT count(*) FROM pg_proc
                WHERE pg_has_role(proowner, 'MEMBER') AND pronamespace = 'public'::regnamespace)
        """
    ).fetchone()
    assert owned == (0,)


def test_every_function_that_writes_is_a_pinned_security_definer_closed_to_public(
    runtime: psycopg.Connection,
) -> None:
    definers = runtime.execute(
        """
        SELECT proname, proconfig, has_function_privilege('public', oid, 'EXECUTE')
        FROM pg_proc WHERE prosecdef AND pronamespace = 'public'::regnamespace ORDER BY proname
        """
    ).fetchall()
    names = [name for name, _, _ in definers]
    assert {"receive_payment", "register_user", "update_user", "delete_user"} <= set(names), names
    for name, config, public_may_execute in definers:
        # The search path pinned (no caller's schema shadows a table), and plans by key
        # (sql/definitions/10-event-log.sql says why).
        assert config == ["search_path=public, pg_temp", "enable_seqscan=off"], (name, config)
        assert not public_may_execute, f"{name} is executable by every role"


def test_the_runtime_role_changes_projections_only_with_their_event(
    runtime: psycopg.Connection, database_url: str
) -> None:
    """What the service does is allowed: a payment through receive_payment, one event and one
    credit, together."""
    body = delivery_body(1, new_account_id(), "2.50")
    data = json.dumps({k: str(v) if k == "amount" else v for k, v in body.items()})
    row = runtime.execute(
        "SELECT outcome, balance FROM receive_payment(%(tx)s, 1, %(account)s, 2.50, %(data)s)",
        {"tx": body["transaction_id"], "account": body["account_id"], "data": data},
    ).fetchone()
    assert row == ("credited", 2.50)
    with psycopg.connect(database_url) as owner:
        count = owner.execute(
            "SELECT count(*) FROM events WHERE transaction_id = %(tx)s", {"tx": body["transaction_id"]}
        ).fetchone()
    assert count == (1,)


def test_receive_payment_refuses_a_delivery_that_disagrees_with_its_payment(
    runtime: psycopg.Connection,
) -> None:
    """A caller of the function (the service, or whoever holds its login) cannot record one
    payment and credit another."""
    body = delivery_body(1, new_account_id(), "2.50")
    data = json.dumps({k: str(v) if k == "amount" else v for k, v in body.items()})
    with pytest.raises(pg_errors.RaiseException):
        runtime.execute(
            "SELECT * FROM receive_payment(%(tx)s, 1, %(account)s, 25000, %(data)s)",
            {"tx": body["transaction_id"], "account": body["account_id"], "data": data},
        )


async def test_the_service_pool_serves_as_the_runtime_role(pool: AsyncConnectionPool) -> None:
    async with db.connection(pool) as conn:
        row = await (
            await conn.execute("SELECT current_user, current_setting('statement_timeout')")
        ).fetchone()
    assert row is not None
    assert row[0] == "ledger_runtime"
    assert row[1] != "0", "request-serving connections have a statement timeout"


async def test_the_auditor_role_reads_verifies_and_exports_but_writes_nothing(
    database_url: str, auditor_login: str
) -> None:
    url = as_login(database_url, auditor_login)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        report = await verify(conn, webhooks_for_tests())
        assert report.events > 0
        lines = [line async for line in export.lines(conn, START)]
        assert lines and "$argon2" not in "".join(lines)
        for attempt in ("append an event directly", "credit a balance directly", "update an event"):
            with pytest.raises(pg_errors.InsufficientPrivilege):
                await conn.execute(FORBIDDEN[attempt])
        with pytest.raises(pg_errors.InsufficientPrivilege):
            await conn.execute(
                "SELECT * FROM receive_payment('x', 1, 1, 1, %(data)s)",
                {"data": json.dumps({"x": uuid.uuid4().hex})},
            )
