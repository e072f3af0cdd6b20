"""`ledger export` and `ledger replay --from`: an auditor takes the log away, replays it into
a database of their own without the service, and gets the balances and the checksum the
service shows in GET /audit/summary."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import falcon.testing
import psycopg
import pytest

from ledger import commands, db
from ledger.audit import checksums, export, feed
from ledger.audit.checksums import live_balance_summary
from ledger.config import CHEAPEST_ARGON2, REPO_ROOT, Settings
from ledger.http.app import create_app
from ledger.http.auth import Tokens
from ledger.projections.rebuild import SELECT_ACCOUNTS
from ledger.projections.users import LoginRecord
from ledger.signatures import Webhooks
from tests.support import INSERT_EVENT_WITH_A_FRACTION, TEST_WEBHOOK_SECRET, delivery, ledger_cli
from tests.support import fill_small_ledger as fill


@pytest.fixture
def empty_database(server_url: str) -> Iterator[str]:
    url = db.create_database(server_url, "ledger_auditor")
    yield url
    db.drop_database(server_url, url)


def replay_from(export_file: Path, database_url: str) -> subprocess.CompletedProcess[str]:
    return ledger_cli(database_url, "replay", "--from", str(export_file), "--database-url", database_url)


async def audit_summary(database_url: str, tmp_path: Path, query: str = "") -> dict:
    """GET /audit/summary from the service on that database, as the seeded admin."""
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path,
        migrations_dir=REPO_ROOT / "sql",
        webhooks=Webhooks(secrets=(TEST_WEBHOOK_SECRET,)),
        jwt_secret=b"export-test-secret-0123456789abcdef",
        token_ttl_s=60,
        argon2=CHEAPEST_ARGON2,
    )
    pool = db.create_pool(database_url, 1, 2)
    await pool.open(wait=True)
    try:
        token = Tokens(settings.jwt_secret, 60).issue(LoginRecord(2, "", 1))
        async with falcon.testing.ASGIConductor(create_app(settings, pool, pool_lifespan=False)) as client:
            result = await client.simulate_get(
                "/audit/summary", query_string=query, headers={"Authorization": f"Bearer {token}"}
            )
    finally:
        await pool.close()
    assert result.status_code == 200, result.text
    return result.json


async def test_an_export_replayed_elsewhere_gives_the_services_balances_and_checksum(
    own_database: str, empty_database: str, tmp_path: Path
) -> None:
    await asyncio.to_thread(fill, own_database)  # fill runs its own event loop
    exported = ledger_cli(own_database, "export")
    assert exported.returncode == 0, exported.stderr
    lines = exported.stdout.splitlines()
    # The seeds, 2 users, an update, 3 new accounts, 5 payments, a deletion.
    assert len(lines) == 3 + 2 + 1 + 3 + 5 + 1
    export_file = tmp_path / "ledger.jsonl"
    export_file.write_text(exported.stdout)

    replayed = replay_from(export_file, empty_database)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr

    summary = await audit_summary(own_database, tmp_path)
    assert f"checksum {summary['checksum']}" in replayed.stdout
    assert f"balances total {summary['balance_total']:.2f}" in replayed.stdout
    assert "account 10 (user 3): 5.50" in replayed.stdout  # 1.25 + 4.25
    last_cursor = json.loads(lines[-1])["cursor"]
    assert f"through cursor {last_cursor}" in replayed.stdout
    # The same figure, computed from the log up to the export's last cursor.
    assert (await audit_summary(own_database, tmp_path, f"through={last_cursor}"))["checksum"] == summary[
        "checksum"
    ]

    # The auditor's database is a real ledger of its own: its own replay agrees with it.
    assert ledger_cli(empty_database, "replay").returncode == 0


def test_the_export_holds_no_secret(own_database: str) -> None:
    fill(own_database)
    exported = ledger_cli(own_database, "export").stdout
    assert "$argon2" not in exported and TEST_WEBHOOK_SECRET.decode() not in exported
    hashes = [json.loads(line)["data"].get("password_hash") for line in exported.splitlines()]
    assert len([h for h in hashes if h is not None]) == 5  # 4 registrations and 1 password change
    assert all(h.startswith("sha256:") for h in hashes if h is not None)


def test_a_doctored_export_is_caught_by_the_replay(
    own_database: str, empty_database: str, tmp_path: Path
) -> None:
    fill(own_database)
    lines = ledger_cli(own_database, "export").stdout.splitlines()
    doctored = []
    for number, line in enumerate(lines, start=1):
        event = json.loads(line)
        if event["type"] == "PaymentReceived" and event["data"]["amount"] == "1.25":
            event["data"]["amount"] = "1001.25"
            doctored_line = number
        doctored.append(json.dumps(event))
    export_file = tmp_path / "doctored.jsonl"
    export_file.write_text("\n".join(doctored) + "\n")
    replayed = replay_from(export_file, empty_database)
    assert replayed.returncode == 1
    assert f"hash differs from the export: line {doctored_line}" in replayed.stdout


def test_replay_from_refuses_a_database_that_is_not_empty(own_database: str, tmp_path: Path) -> None:
    export_file = tmp_path / "ledger.jsonl"
    export_file.write_text(ledger_cli(own_database, "export").stdout)
    refused = ledger_cli(own_database, "replay", "--from", str(export_file), "--database-url", own_database)
    assert refused.returncode == 2
    assert "not empty" in refused.stderr


def test_export_after_a_cursor_continues_there(own_database: str) -> None:
    fill(own_database)
    everything = ledger_cli(own_database, "export").stdout.splitlines()
    cursor = json.loads(everything[4])["cursor"]
    rest = ledger_cli(own_database, "export", "--after", cursor).stdout.splitlines()
    assert rest == everything[5:]


def test_export_draws_a_progress_bar_only_on_a_terminal(own_database: str) -> None:
    fill(own_database)
    controller, terminal = pty.openpty()
    env = {**os.environ, "LEDGER_DATABASE_URL": own_database, "LEDGER_JWT_SECRET": "cli-test"}
    with subprocess.Popen(
        [sys.executable, "-m", "ledger", "export"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=terminal,
    ) as process:
        os.close(terminal)
        stdout, _ = process.communicate(timeout=120)
    drawn = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the terminal's other end is closed: all is read
            break
        if not chunk:
            break
        drawn += chunk
    os.close(controller)
    assert process.returncode == 0
    assert b"exported 15/15 events (100%)" in drawn
    assert b"exported" not in stdout  # the data stays clean
    piped = ledger_cli(own_database, "export")
    assert "exported" not in piped.stderr


async def test_transfers_and_reversals_travel_in_the_export_and_replay_to_the_same_books(
    own_database: str, empty_database: str, tmp_path: Path
) -> None:
    """Audit continuity: the feed, the export, the hash chains, verify and an independent
    replay cover money that moved, with its keys and reasons."""
    await asyncio.to_thread(fill, own_database)
    await asyncio.to_thread(move_money, own_database)
    exported = ledger_cli(own_database, "export")
    assert exported.returncode == 0, exported.stderr
    events = [json.loads(line) for line in exported.stdout.splitlines()]
    transfer = next(e for e in events if e["type"] == "TransferMade")
    assert transfer["data"]["idempotency_key"] == "move-1" and len(transfer["data"]["postings"]) == 2
    reversal = next(e for e in events if e["type"] == "PaymentReversed")
    assert reversal["data"]["reason"] == "refund, line 2"
    secrets = {"LEDGER_WEBHOOK_SECRETS": TEST_WEBHOOK_SECRET.decode()}
    verified = ledger_cli(own_database, "verify", **secrets)
    assert verified.returncode == 0 and "intact" in verified.stdout, verified.stdout
    export_file = tmp_path / "ledger.jsonl"
    export_file.write_text(exported.stdout)
    replayed = replay_from(export_file, empty_database)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    summary = await audit_summary(own_database, tmp_path)
    assert f"checksum {summary['checksum']}" in replayed.stdout
    assert ledger_cli(empty_database, "replay").returncode == 0
    assert ledger_cli(empty_database, "verify", **secrets).returncode == 0


def move_money(database_url: str) -> None:
    """A transfer and a refund on the small ledger of fill_small_ledger (alice: accounts 10, 11)."""

    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            alice = (await (await conn.execute("SELECT user_id FROM accounts WHERE id = 10")).fetchone())[0]  # type: ignore[index]
            await commands.transfer_money(conn, alice, "move-1", commands.Transfer(10, 11, Decimal("1.00")))
            payment = (
                await (await conn.execute("SELECT min(id) FROM payments WHERE account_id = 11")).fetchone()
            )[0]  # type: ignore[index]
            await commands.reverse_payment(
                conn, 2, "refund-1", commands.Reversal(payment, Decimal("0.50"), "refund, line 2")
            )

    asyncio.run(run())


# The same export and replay in process: the exact report of each step, which the command line
# prints only in part.


@pytest.fixture
def unseeded_database(server_url: str) -> Iterator[str]:
    """A migrated database whose log is empty, as `ledger replay --from` prepares one."""
    url = db.create_database(server_url, "ledger_unseeded")
    db.migrate(url, REPO_ROOT / "sql", with_seeds=False)
    yield url
    db.drop_database(server_url, url)


async def export_lines(database_url: str) -> list[str]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        return [text async for text in export.lines(conn, feed.START)]


async def test_an_export_loads_into_an_empty_log_and_rebuilds_the_same_books(
    own_database: str, unseeded_database: str
) -> None:
    await asyncio.to_thread(fill, own_database)
    lines = await export_lines(own_database)
    async with await psycopg.AsyncConnection.connect(own_database, autocommit=True) as conn:
        accounts = await (await conn.execute(SELECT_ACCOUNTS)).fetchall()
        summary = await live_balance_summary(conn)
    with_blank_lines = ["", *lines[:3], "   ", *lines[3:], ""]

    async with await psycopg.AsyncConnection.connect(unseeded_database, autocommit=True) as conn:
        replayed = await export.replay_export(conn, with_blank_lines)
        assert replayed.load.events == len(lines) == 15
        assert replayed.load.last_cursor == feed.Cursor.parse(json.loads(lines[-1])["cursor"])
        assert replayed.load.hash_mismatches == []
        assert [(a.id, a.user_id, a.balance) for a in replayed.accounts] == accounts
        assert replayed.summary == summary
        # The log goes on where the export ended: the next event is appended after it.
        await commands.receive_payment(conn, delivery(1, 1, "2.00"))
        (position,) = await (await conn.execute("SELECT max(position) FROM events")).fetchone()  # type: ignore[misc]
    assert position == json.loads(lines[-1])["position"] + 1


async def test_the_replay_names_the_lines_whose_hash_differs_the_first_ones_up_to_the_limit(
    own_database: str, unseeded_database: str
) -> None:
    await asyncio.to_thread(fill, own_database)
    lines = await export_lines(own_database)
    doctored_numbers = [number for number, text in enumerate(lines, start=1) if '"PaymentReceived"' in text][
        1:3
    ]
    doctored = list(lines)
    for number in doctored_numbers:
        event = json.loads(lines[number - 1])
        event["data"]["amount"] = "999.99"
        doctored[number - 1] = json.dumps(event)
    expected = [
        (number, json.loads(lines[number - 1])["position"], json.loads(lines[number - 1])["stream"])
        for number in doctored_numbers
    ]
    async with await psycopg.AsyncConnection.connect(unseeded_database) as conn:
        async with conn.transaction(force_rollback=True):
            assert (await export.load(conn, doctored)).hash_mismatches == expected
        async with conn.transaction(force_rollback=True):
            assert (await export.load(conn, doctored, mismatch_limit=1)).hash_mismatches == expected[:1]


@pytest.mark.parametrize(
    "spoil",
    [
        lambda event: "not json at all",
        lambda event: json.dumps({key: value for key, value in event.items() if key != "hash"}),
        lambda event: json.dumps({**event, "cursor": "somewhere"}),
        lambda event: json.dumps({**event, "data": ["a", "list"]}),
        lambda event: json.dumps({**event, "position": "first"}),
    ],
    ids=["not JSON", "no hash", "no cursor", "data not an object", "position not a number"],
)
async def test_the_replay_refuses_a_line_that_is_not_an_exported_event_and_names_it(
    own_database: str, unseeded_database: str, spoil: object
) -> None:
    lines = await export_lines(own_database)
    spoiled = [*lines[:1], spoil(json.loads(lines[1])), *lines[2:]]  # type: ignore[operator]
    async with await psycopg.AsyncConnection.connect(unseeded_database, autocommit=True) as conn:
        with pytest.raises(export.ExportError, match="^line 2: not an exported event"):
            await export.replay_export(conn, spoiled)
        # Nothing of it stayed.
        assert await (await conn.execute("SELECT count(*) FROM events")).fetchone() == (0,)


async def test_the_replay_refuses_a_log_that_is_not_empty(own_database: str) -> None:
    lines = await export_lines(own_database)
    async with await psycopg.AsyncConnection.connect(own_database, autocommit=True) as conn:
        with pytest.raises(ValueError, match="not empty"):
            await export.replay_export(conn, lines)


async def test_the_export_pages_through_the_feed_without_a_gap_or_a_repeat(
    own_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await asyncio.to_thread(fill, own_database)
    whole = await export_lines(own_database)
    for page_size in (1, 2, 7, 15):  # 15: the pages end exactly at the last event
        monkeypatch.setattr(export, "EXPORT_PAGE_SIZE", page_size)
        assert await export_lines(own_database) == whole, page_size
    async with await psycopg.AsyncConnection.connect(own_database, autocommit=True) as conn:
        assert await feed.count_after(conn, feed.START) == len(whole)
        fifth = feed.Cursor.parse(json.loads(whole[4])["cursor"])
        assert fifth is not None
        assert await feed.count_after(conn, fifth) == len(whole) - 5
        assert [text async for text in export.lines(conn, fifth)] == whole[5:]


async def test_an_export_line_is_compact_json_with_numbers_exact_and_replays_to_the_same_hash(
    own_database: str, unseeded_database: str
) -> None:
    async with await psycopg.AsyncConnection.connect(own_database, autocommit=True) as conn:
        await conn.execute(INSERT_EVENT_WITH_A_FRACTION)
    lines = await export_lines(own_database)
    assert '"data":{"rate":1.10,"user_id":1,"account_id":888}' in lines[-1], lines[-1]  # jsonb's key order
    async with (
        await psycopg.AsyncConnection.connect(unseeded_database) as conn,
        conn.transaction(force_rollback=True),
    ):
        assert (await export.load(conn, lines)).hash_mismatches == []


async def test_the_feed_head_is_its_last_cursor_and_size_and_the_start_of_an_empty_log(
    own_database: str, unseeded_database: str
) -> None:
    async with await psycopg.AsyncConnection.connect(unseeded_database, autocommit=True) as conn:
        assert await checksums.feed_head(conn) == checksums.FeedHead(feed.START, 0)
    lines = await export_lines(own_database)
    async with await psycopg.AsyncConnection.connect(own_database, autocommit=True) as conn:
        last = feed.Cursor.parse(json.loads(lines[-1])["cursor"])
        assert await checksums.feed_head(conn) == checksums.FeedHead(last, len(lines))  # type: ignore[arg-type]


async def test_the_replay_names_at_most_twenty_lines_whose_hash_differs(
    own_database: str, unseeded_database: str
) -> None:
    async with await psycopg.AsyncConnection.connect(own_database, autocommit=True) as conn:
        await commands.receive_payments(conn, [delivery(1, 1, "1.00") for _ in range(25)])
    lines = [json.dumps({**json.loads(text), "hash": "00" * 32}) for text in await export_lines(own_database)]
    async with (
        await psycopg.AsyncConnection.connect(unseeded_database) as conn,
        conn.transaction(force_rollback=True),
    ):
        assert len((await export.load(conn, lines)).hash_mismatches) == 20
