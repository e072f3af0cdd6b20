"""Fixtures of the database tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from psycopg_pool import AsyncConnectionPool

from ledger import db
from ledger.config import REPO_ROOT
from ledger.passwords import Passwords
from ledger.projections.users import UserView
from tests.conftest import drop_database, fresh_database
from tests.support import create_user


@pytest.fixture
def own_database(server_url: str) -> Iterator[str]:
    """A migrated database of the test's own: for tests that damage projections on purpose,
    or whose failure must not spill into the shared database's replay checks."""
    url = fresh_database(server_url, "ledger_own")
    db.migrate(url, REPO_ROOT / "sql")
    yield url
    drop_database(server_url, url)


@pytest.fixture
async def user(pool: AsyncConnectionPool, passwords: Passwords) -> UserView:
    """A new user of the shared database."""
    async with pool.connection() as conn:
        return await create_user(conn, passwords)
