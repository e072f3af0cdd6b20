"""`ledger verify`: an untouched log verifies; each tampering committed straight into the
table (as a superuser, with the append-only trigger off) is named by the event it touched."""

from __future__ import annotations

import asyncio
import json

import psycopg
import pytest

from ledger import commands
from tests.support import TEST_WEBHOOK_SECRET, accepted_delivery, delivery_body, ledger_cli, new_account_id
from tests.support import fill_small_ledger as fill

# account-10 gets three events from fill(): AccountOpened (v1), PaymentReceived (v2, v3).
SELECT_STREAM = (
    "SELECT position, stream_version FROM events WHERE stream = 'account-10' ORDER BY stream_version"
)

# Triggers off for this session only: the way a superuser with a grudge would go about it.
TRIGGERS_OFF = "SET session_replication_role = replica"


def verify(database_url: str, secrets: bytes = TEST_WEBHOOK_SECRET) -> tuple[int, str]:
    result = ledger_cli(database_url, "verify", LEDGER_WEBHOOK_SECRETS=secrets.decode())
    return result.returncode, result.stdout + result.stderr


def account_10(database_url: str) -> list[tuple[int, int]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(SELECT_STREAM).fetchall()


def tamper(database_url: str, *statements: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(TRIGGERS_OFF)
        for statement in statements:
            conn.execute(statement)


def test_an_untouched_log_verifies(own_database: str) -> None:
    fill(own_database)
    code, output = verify(own_database)
    assert code == 0, output
    assert "intact" in output


def test_verify_names_an_altered_event(own_database: str) -> None:
    fill(own_database)
    (_, _), (paid, _), _ = account_10(own_database)
    tamper(
        own_database,
        f"UPDATE events SET data = jsonb_set(data, '{{amount}}', '\"1000.25\"') WHERE position = {paid}",
    )
    code, output = verify(own_database)
    assert code == 1
    assert f"altered: position {paid} (account-10)" in output, output


def test_verify_names_a_removed_event(own_database: str) -> None:
    fill(own_database)
    (_, _), (removed, _), (after, _) = account_10(own_database)
    tamper(own_database, f"DELETE FROM events WHERE position = {removed}")
    code, output = verify(own_database)
    assert code == 1
    assert f"removed: position {after} (account-10): version 2 missing before it" in output, output


def test_verify_names_a_removed_last_event(own_database: str) -> None:
    fill(own_database)
    *_, (last, _) = account_10(own_database)
    tamper(own_database, f"DELETE FROM events WHERE position = {last}")
    code, output = verify(own_database)
    assert code == 1
    assert "removed: no position (account-10): version 3 missing at the end (head is 3)" in output, output


def test_verify_names_an_inserted_event(own_database: str) -> None:
    fill(own_database)
    tamper(
        own_database,
        "INSERT INTO events (stream, type, data, transaction_id, stream_version, hash) "
        "SELECT stream, type, jsonb_set(data, '{transaction_id}', '\"forged\"'), 'forged', 4, hash "
        "FROM events WHERE stream = 'account-10' AND stream_version = 3",
    )
    (forged,) = [p for p, version in account_10(own_database) if version == 4]
    code, output = verify(own_database)
    assert code == 1
    assert f"inserted: position {forged} (account-10): version 4 is beyond the head (3)" in output, output


def test_verify_names_reordered_events(own_database: str) -> None:
    fill(own_database)
    _, (first, _), (second, _) = account_10(own_database)
    # The two payments trade places in the log: each keeps its content, version and hash.
    tamper(
        own_database,
        f"CREATE TEMP TABLE moved AS SELECT * FROM events WHERE position IN ({first}, {second})",
        f"DELETE FROM events WHERE position IN ({first}, {second})",
        f"UPDATE moved SET position = CASE position WHEN {first} THEN {second} ELSE {first} END",
        "INSERT INTO events OVERRIDING SYSTEM VALUE SELECT * FROM moved",
    )
    code, output = verify(own_database)
    assert code == 1
    assert f"reordered: position {first} (account-10): version 3 sits before position {second}" in output, (
        output
    )
    assert "altered" not in output and "removed" not in output


def test_verify_checks_every_signature_against_the_configured_secrets(own_database: str) -> None:
    fill(own_database)
    code, output = verify(own_database, secrets=b"a-secret-that-signed-nothing")
    assert code == 1
    assert output.count("bad_signature:") == 5, output
    # A rotated list that still holds the signing secret verifies.
    code, output = verify(own_database, secrets=b"the-new-secret," + TEST_WEBHOOK_SECRET)
    assert code == 0, output


def test_a_signature_sent_in_capitals_verifies(own_database: str) -> None:
    """Hex in either case is the same signature: the service credits it, and verify agrees."""
    body = delivery_body(1, new_account_id(), "4.20")
    body["signature"] = body["signature"].upper()

    async def credit() -> None:
        async with await psycopg.AsyncConnection.connect(own_database, autocommit=True) as conn:
            await commands.receive_payment(conn, accepted_delivery(json.dumps(body).encode()))

    asyncio.run(credit())
    code, output = verify(own_database)
    assert code == 0, output


@pytest.mark.parametrize("field", ["account_id", "amount", "user_id"])
def test_an_altered_payment_also_fails_its_signature(own_database: str, field: str) -> None:
    """Whoever rewrites a payment (and might forge the chain too) cannot sign for the provider."""
    fill(own_database)
    _, (paid, _), _ = account_10(own_database)
    new_value = "'\"9.99\"'" if field == "amount" else "'12345'"
    with psycopg.connect(own_database) as conn:
        conn.execute(
            "ALTER TABLE events DISABLE TRIGGER events_refuse_update_delete; "
            f"UPDATE events SET data = jsonb_set(data, '{{{field}}}', {new_value}::jsonb) "
            f"WHERE position = {paid}; "
            "ALTER TABLE events ENABLE TRIGGER events_refuse_update_delete"
        )
    code, output = verify(own_database)
    assert code == 1
    assert f"bad_signature: position {paid}" in output, output


def test_verify_names_an_event_inserted_in_a_stream_of_its_own(own_database: str) -> None:
    fill(own_database)
    tamper(
        own_database,
        "INSERT INTO events (stream, type, data, stream_version, hash) "
        "VALUES ('account-777', 'AccountOpened', '{\"account_id\": 777, \"user_id\": 1}', 1, '\\x00')",
    )
    with psycopg.connect(own_database) as conn:
        (forged,) = conn.execute("SELECT position FROM events WHERE stream = 'account-777'").fetchone()  # type: ignore[misc]
    code, output = verify(own_database)
    assert code == 1
    assert f"inserted: position {forged} (account-777): a stream without a head" in output, output
