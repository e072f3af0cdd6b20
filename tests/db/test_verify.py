"""`ledger verify`: an untouched log verifies; each tampering committed straight into the
table (as a superuser, with the append-only trigger off) is named by the event it touched.

The command is run as a user runs it where its exit status and output are the point; elsewhere
verify() runs in process and its whole report is compared, finding by finding."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter

import psycopg
import pytest

from ledger import commands
from ledger.audit import verify as audit
from ledger.audit.verify import Finding
from ledger.signatures import Webhooks
from tests.support import (
    TEST_WEBHOOK_SECRET,
    accepted_delivery,
    delivery_body,
    ledger_cli,
    new_account_id,
)
from tests.support import fill_small_ledger as fill

# account-10 gets three events from fill(): AccountOpened (v1), PaymentReceived (v2, v3).
SELECT_STREAM = (
    "SELECT position, stream_version FROM events WHERE stream = 'account-10' ORDER BY stream_version"
)

# Triggers off for this session only: the way a superuser with a grudge would go about it.
TRIGGERS_OFF = "SET session_replication_role = replica"


def verify_command(database_url: str, secrets: bytes = TEST_WEBHOOK_SECRET) -> tuple[int, str]:
    result = ledger_cli(database_url, "verify", LEDGER_WEBHOOK_SECRETS=secrets.decode())
    return result.returncode, result.stdout + result.stderr


def verify(database_url: str, *secrets: bytes) -> audit.VerifyReport:
    """verify()'s report, in process, under secrets (the test secret when none is given)."""

    async def run() -> audit.VerifyReport:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            return await audit.verify(conn, Webhooks(secrets=secrets or (TEST_WEBHOOK_SECRET,)))

    return asyncio.run(run())


def account_10(database_url: str) -> list[tuple[int, int]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(SELECT_STREAM).fetchall()


def tamper(database_url: str, *statements: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(TRIGGERS_OFF)
        for statement in statements:
            conn.execute(statement)


def alter_the_first_payment_to_account_10(database_url: str) -> int:
    """Raise the amount of account 10's first payment, as its row; return its position."""
    (_, _), (paid, _), _ = account_10(database_url)
    tamper(
        database_url,
        f"UPDATE events SET data = jsonb_set(data, '{{amount}}', '\"1000.25\"') WHERE position = {paid}",
    )
    return paid


def test_an_untouched_log_verifies(own_database: str) -> None:
    fill(own_database)
    code, output = verify_command(own_database)
    assert code == 0, output
    assert output.strip().endswith("verified 15 events in 8 streams: intact"), output
    report = verify(own_database)
    assert (report.events, report.streams, report.findings, report.intact) == (15, 8, [], True)


def test_the_command_prints_each_finding_and_exits_1(own_database: str) -> None:
    fill(own_database)
    paid = alter_the_first_payment_to_account_10(own_database)
    code, output = verify_command(own_database)
    assert code == 1
    assert f"altered: position {paid} (account-10)" in output, output
    assert output.splitlines() == [str(finding) for finding in verify(own_database).findings] + [
        "verified 15 events in 8 streams: 2 finding(s)"
    ], output


def test_verify_names_an_altered_event(own_database: str) -> None:
    fill(own_database)
    paid = alter_the_first_payment_to_account_10(own_database)
    # The altered payment no longer matches its signature either.
    assert verify(own_database).findings == [
        Finding(
            "bad_signature", paid, "account-10", "the signature holds under none of the configured secrets"
        ),
        Finding(
            "altered", paid, "account-10", "version 2: its hash is not its content chained to its predecessor"
        ),
    ]
    assert str(verify(own_database).findings[1]) == (
        f"altered: position {paid} (account-10): "
        "version 2: its hash is not its content chained to its predecessor"
    )


def test_verify_names_an_altered_last_event_once(own_database: str) -> None:
    fill(own_database)
    *_, (last, _) = account_10(own_database)
    tamper(own_database, f'UPDATE events SET data = data || \'{{"note": "x"}}\' WHERE position = {last}')
    # Its link and the stream's head both break: one finding.
    assert verify(own_database).findings == [
        Finding(
            "altered", last, "account-10", "version 3: its hash is not its content chained to its predecessor"
        ),
    ]


def test_verify_names_a_stream_whose_head_was_rewritten(own_database: str) -> None:
    fill(own_database)
    *_, (last, _) = account_10(own_database)
    tamper(own_database, "UPDATE stream_heads SET hash = '\\x00' WHERE stream = 'account-10'")
    assert verify(own_database).findings == [
        Finding("altered", last, "account-10", "version 3: its hash is not the head's"),
    ]


def test_verify_names_a_removed_event(own_database: str) -> None:
    fill(own_database)
    (_, _), (removed, _), (after, _) = account_10(own_database)
    tamper(own_database, f"DELETE FROM events WHERE position = {removed}")
    assert verify(own_database).findings == [
        Finding("removed", after, "account-10", "version 2 missing before it"),
    ]


def test_verify_names_a_removed_last_event(own_database: str) -> None:
    fill(own_database)
    *_, (last, _) = account_10(own_database)
    tamper(own_database, f"DELETE FROM events WHERE position = {last}")
    findings = verify(own_database).findings
    assert findings == [Finding("removed", None, "account-10", "version 3 missing at the end (head is 3)")]
    assert str(findings[0]) == "removed: no position (account-10): version 3 missing at the end (head is 3)"


def test_verify_names_the_removed_last_events_as_a_range(own_database: str) -> None:
    fill(own_database)
    _, (second, _), (last, _) = account_10(own_database)
    tamper(own_database, f"DELETE FROM events WHERE position IN ({second}, {last})")
    assert verify(own_database).findings == [
        Finding("removed", None, "account-10", "version 2..3 missing at the end (head is 3)")
    ]


def test_verify_names_an_inserted_event(own_database: str) -> None:
    fill(own_database)
    tamper(
        own_database,
        "INSERT INTO events (stream, type, data, transaction_id, stream_version, hash) "
        "SELECT stream, type, jsonb_set(data, '{transaction_id}', '\"forged\"'), 'forged', 4, hash "
        "FROM events WHERE stream = 'account-10' AND stream_version = 3",
    )
    (forged,) = [p for p, version in account_10(own_database) if version == 4]
    findings = verify(own_database).findings
    assert Finding("inserted", forged, "account-10", "version 4 is beyond the head (3)") in findings, findings
    assert {finding.kind for finding in findings} <= {
        "inserted",
        "altered",
        "bad_signature",
        "reused_signature",
    }


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
    assert verify(own_database).findings == [
        Finding(
            "reordered",
            first,
            "account-10",
            f"version 3 sits before position {second}, which holds version 2",
        )
    ]


def test_verify_checks_every_signature_against_the_configured_secrets(own_database: str) -> None:
    fill(own_database)
    report = verify(own_database, b"a-secret-that-signed-nothing")
    assert [finding.kind for finding in report.findings] == ["bad_signature"] * 5, report.findings
    # A rotated list that still holds the signing secret verifies.
    assert verify(own_database, b"the-new-secret", TEST_WEBHOOK_SECRET).intact
    code, output = verify_command(own_database, secrets=b"the-new-secret," + TEST_WEBHOOK_SECRET)
    assert code == 0, output


def test_a_signature_sent_in_capitals_verifies(own_database: str) -> None:
    """Hex in either case is the same signature: the service credits it, and verify agrees."""
    body = delivery_body(1, new_account_id(), "4.20")
    body["signature"] = body["signature"].upper()

    async def credit() -> None:
        async with await psycopg.AsyncConnection.connect(own_database, autocommit=True) as conn:
            await commands.receive_payment(conn, accepted_delivery(json.dumps(body).encode()))

    asyncio.run(credit())
    assert verify(own_database).intact


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
    findings = verify(own_database).findings
    assert (
        Finding(
            "bad_signature", paid, "account-10", "the signature holds under none of the configured secrets"
        )
        in findings
    ), findings


def test_verify_names_an_event_inserted_in_a_stream_of_its_own(own_database: str) -> None:
    fill(own_database)
    tamper(
        own_database,
        "INSERT INTO events (stream, type, data, stream_version, hash) "
        "VALUES ('account-777', 'AccountOpened', '{\"account_id\": 777, \"user_id\": 1}', 1, '\\x00')",
    )
    with psycopg.connect(own_database) as conn:
        (forged,) = conn.execute("SELECT position FROM events WHERE stream = 'account-777'").fetchone()  # type: ignore[misc]
    assert verify(own_database).findings == [
        Finding("inserted", forged, "account-777", "a stream without a head: no append made it")
    ]


# More than a thousand of each kind of finding, written straight into the log by its owner.
BULK_TAMPERING = (
    # 1,001 payments under signatures that no secret made, each in a stream of its own...
    """INSERT INTO events (stream, type, data, transaction_id)
       SELECT 'account-' || g, 'PaymentReceived',
              jsonb_build_object('transaction_id', 'bulk-' || g, 'user_id', 1, 'account_id', g,
                                 'amount', '1.00', 'signature', md5(g::text)),
              'bulk-' || g
       FROM generate_series(5000001, 5001001) AS g""",
    # ... whose heads are then rewritten;
    "UPDATE stream_heads SET hash = '\\x00' WHERE stream LIKE 'account-500____'",
    # 1,001 signatures each recorded under two transaction ids;
    """INSERT INTO events (stream, type, data, transaction_id)
       SELECT 'account-' || g, 'PaymentReceived',
              jsonb_build_object('transaction_id', 'pair-' || g || '-' || n, 'user_id', 1, 'account_id', g,
                                 'amount', '1.00', 'signature', md5('pair' || g)),
              'pair-' || g || '-' || n
       FROM generate_series(6000001, 6001001) AS g, generate_series(1, 2) AS n""",
    # 1,001 transfers whose postings do not balance, written around the database's guard.
    "ALTER TABLE events DISABLE TRIGGER events_balanced",
    """INSERT INTO events (stream, type, data)
       SELECT 'transfer-' || g, 'TransferMade',
              jsonb_build_object('transfer_id', g, 'user_id', 1, 'idempotency_key', 'k' || g,
                                 'from_account_id', 1, 'to_account_id', 1, 'amount', '5.00',
                                 'postings', '[{"account_id": 1, "amount": "5.00"},
                                               {"account_id": -1, "amount": "-4.00"}]'::jsonb)
       FROM generate_series(7000001, 7001001) AS g""",
    "ALTER TABLE events ENABLE TRIGGER events_balanced",
)


def test_verify_names_at_most_a_thousand_findings_of_each_kind(own_database: str) -> None:
    with psycopg.connect(own_database, autocommit=True) as conn:
        for statement in BULK_TAMPERING:
            conn.execute(statement)
    kinds = Counter(
        finding.kind
        for finding in verify(own_database).findings
        if finding.kind != "unbalanced" or finding.position is not None
    )
    assert dict(kinds) == {
        "bad_signature": 1000,
        "altered": 1000,
        "reused_signature": 1000,
        "unbalanced": 1000,
    }, kinds


def test_verify_names_a_removed_first_event_and_a_stream_emptied_of_events(own_database: str) -> None:
    fill(own_database)
    (opened, _), (paid, _), _ = account_10(own_database)
    tamper(
        own_database,
        f"DELETE FROM events WHERE position = {opened}",
        "DELETE FROM events WHERE stream = 'account-12'",
    )
    assert verify(own_database).findings == [
        Finding("removed", paid, "account-10", "version 1 missing before it"),
        Finding("removed", None, "account-12", "version 1..2 missing at the end (head is 2)"),
    ]


def test_verify_goes_on_past_a_stream_without_a_head(own_database: str) -> None:
    fill(own_database)
    _, (paid, _), _ = account_10(own_database)
    tamper(
        own_database,
        # 'account-0' sorts before 'account-10': the altered event comes after it.
        "INSERT INTO events (stream, type, data, stream_version, hash) "
        "VALUES ('account-0', 'AccountOpened', '{\"account_id\": 0, \"user_id\": 1}', 1, '\\x00')",
        f'UPDATE events SET data = data || \'{{"note": "x"}}\' WHERE position = {paid}',
    )
    assert [(f.kind, f.stream) for f in verify(own_database).findings] == [
        ("inserted", "account-0"),
        ("altered", "account-10"),
    ]


def test_verify_names_a_signature_recorded_under_two_transaction_ids_exactly(own_database: str) -> None:
    genuine = delivery_body(1, 1, 100, "5eae" + uuid.uuid4().hex)
    recut = {**genuine, "amount": "1005", "transaction_id": genuine["transaction_id"][1:]}
    with psycopg.connect(own_database, autocommit=True) as conn:
        positions = [
            conn.execute(
                "INSERT INTO events (stream, type, data, transaction_id) "
                "VALUES ('account-1', 'PaymentReceived', %(data)s, %(tx)s) RETURNING position",
                {"data": json.dumps({**body, "amount": str(body["amount"])}), "tx": body["transaction_id"]},
            ).fetchone()[0]  # type: ignore[index]
            for body in (genuine, recut)
        ]
    reused = [f for f in verify(own_database).findings if f.kind == "reused_signature"]
    detail = "one signature (or webhook-id) is recorded under transactions "
    assert reused == [
        Finding(
            "reused_signature",
            positions[1],
            "account-1",
            detail + f"{genuine['transaction_id']}, {recut['transaction_id']}",
        )
    ]
