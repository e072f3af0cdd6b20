"""Backups that restore: a base backup (pg_basebackup) plus the WAL archive (archive_command),
restored into a new data directory up to a named point (restore_command, recovery_target_name),
where `ledger replay` and `ledger verify` pass and the balances' checksum is the source's at that
point. PostgreSQL's own tools only, as the README shows them, on a throwaway cluster.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import psycopg

from bench.clusters import (
    append_settings,
    init_cluster,
    postgres_binary,
    run_as_service_user,
    running_cluster,
    service_directory,
    wait_until_promoted,
)
from ledger import commands, db
from ledger.config import PUBLIC_EXAMPLE_WEBHOOK_SECRET, REPO_ROOT
from tests.support import TEST_WEBHOOK_SECRET, delivery, fill_small_ledger, ledger_cli

RESTORE_POINT = "ledger-before-the-later-payments"
ARCHIVE_TIMEOUT_S = 30
PAYMENTS_PER_STAGE = 5
# Every payment of these tests is signed with one of these (fill_small_ledger's, delivery()'s).
VERIFY_SECRETS = {"LEDGER_WEBHOOK_SECRETS": f"{TEST_WEBHOOK_SECRET.decode()},{PUBLIC_EXAMPLE_WEBHOOK_SECRET}"}
CHECKSUM = re.compile(r"^checksum ([0-9a-f]{64})$", re.MULTILINE)


def test_a_base_backup_and_the_wal_archive_restore_to_a_named_point_where_replay_and_verify_pass() -> None:
    with service_directory("ledger-backup-") as root:
        archive = root / "archive"
        run_as_service_user("mkdir", archive)
        source_dir, base, restored_dir = root / "source", root / "base", root / "restored"
        init_cluster(source_dir)
        append_settings(
            source_dir,
            {
                "wal_level": "replica",
                "archive_mode": "on",
                # Never overwrite an archived segment: a second cluster archiving into the same
                # place by mistake fails loudly instead of corrupting the first one's history.
                "archive_command": f"test ! -f {archive}/%f && cp %p {archive}/%f",
            },
        )
        with running_cluster(source_dir) as source:
            url = db.create_database(source.url(), "ledger_backup")
            database = db.database_name(url)
            db.migrate(url, REPO_ROOT / "sql")
            fill_small_ledger(url)
            run_as_service_user(
                postgres_binary("pg_basebackup"),
                *("-h", "127.0.0.1", "-p", str(source.port), "-U", "postgres"),
                *("-D", base, "--checkpoint=fast", "--wal-method=stream"),
            )
            pay(url, "between")  # after the base backup: the archive must bring these back

            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("SELECT pg_create_restore_point(%(name)s)", {"name": RESTORE_POINT})
            at_point = ledger_cli(url, "replay")
            assert at_point.returncode == 0, at_point.stdout + at_point.stderr
            checksum_at_point = checksum_of(at_point.stdout)

            pay(url, "later")  # after the point: a restore to the point must not have these
            with psycopg.connect(url, autocommit=True) as conn:
                assert checksum_of(ledger_cli(url, "replay").stdout) != checksum_at_point
                # Close the segment that holds the point, so that it is archived now.
                row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
                assert row is not None
                wait_until_archived(archive / row[0])

        run_as_service_user("cp", "-a", base, restored_dir)
        append_settings(
            restored_dir,
            {
                "restore_command": f"cp {archive}/%f %p",
                "recovery_target_name": RESTORE_POINT,
                "recovery_target_action": "promote",
                "archive_mode": "off",  # the restored copy must not archive into the source's archive
            },
        )
        run_as_service_user("touch", restored_dir / "recovery.signal")
        with running_cluster(restored_dir) as restored:
            wait_until_promoted(restored.url())
            restored_url = restored.url(database)
            replayed = ledger_cli(restored_url, "replay")
            assert replayed.returncode == 0, replayed.stdout + replayed.stderr
            assert "projections equal the rebuild" in replayed.stdout
            assert checksum_of(replayed.stdout) == checksum_at_point
            verified = ledger_cli(restored_url, "verify", **VERIFY_SECRETS)
            assert verified.returncode == 0, verified.stdout + verified.stderr
            assert verified.stdout.rstrip().endswith(": intact"), verified.stdout
            with psycopg.connect(restored_url) as conn:
                counts = dict(
                    conn.execute(
                        "SELECT split_part(transaction_id, '-', 1), count(*) FROM payments GROUP BY 1"
                    ).fetchall()
                )
            assert counts.get("between") == PAYMENTS_PER_STAGE, counts
            assert "later" not in counts, counts


def pay(url: str, stage: str) -> None:
    """Record PAYMENTS_PER_STAGE payments to the seeded user's account 1, with transaction ids
    `<stage>-<n>`, through the ledger's own command."""

    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            for n in range(PAYMENTS_PER_STAGE):
                await commands.receive_payment(conn, delivery(1, 1, f"{n + 1}.10", f"{stage}-{n}"))

    asyncio.run(run())


def checksum_of(replay_output: str) -> str:
    found = CHECKSUM.search(replay_output)
    assert found, f"no checksum in:\n{replay_output}"
    return found.group(1)


def wait_until_archived(segment: Path) -> None:
    deadline = time.monotonic() + ARCHIVE_TIMEOUT_S
    while not segment.exists():
        assert time.monotonic() < deadline, f"{segment.name} not archived after {ARCHIVE_TIMEOUT_S}s"
        time.sleep(0.1)
