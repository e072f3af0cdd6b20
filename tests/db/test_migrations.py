"""Migrations: applied once, also when several processes start at the same moment."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import psycopg

from ledger import db
from ledger.config import REPO_ROOT

MIGRATIONS = REPO_ROOT / "sql"


def test_concurrent_starts_apply_each_migration_once(server_url: str) -> None:
    url = db.create_database(server_url, "ledger_migrate")
    try:
        with ThreadPoolExecutor(max_workers=4) as executor:
            applied = list(executor.map(lambda _: db.migrate(url, MIGRATIONS), range(4)))
        # Exactly one starter applied everything; the others waited and found nothing pending.
        all_ids = sorted(
            path.stem for path in MIGRATIONS.glob("*.sql") if not path.stem.endswith(".rollback")
        )
        assert sorted(applied, key=len) == [[], [], [], all_ids]
        assert db.pending_migrations(url, MIGRATIONS) == []
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM users").fetchone() == (2,)
            assert conn.execute("SELECT count(*) FROM events").fetchone() == (3,)
    finally:
        db.drop_database(server_url, url)
