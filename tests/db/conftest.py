"""Fixtures of the database tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ledger import db
from ledger.config import REPO_ROOT
from tests.conftest import drop_database, fresh_database


@pytest.fixture
def own_database(server_url: str) -> Iterator[str]:
    """A migrated database of the test's own: for tests that damage projections on purpose,
    or whose failure must not spill into the shared database's replay checks."""
    url = fresh_database(server_url, "ledger_own")
    db.migrate(url, REPO_ROOT / "sql")
    yield url
    drop_database(server_url, url)
