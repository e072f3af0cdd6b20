"""Fixtures of the database tests."""

from __future__ import annotations

import pytest
from psycopg_pool import AsyncConnectionPool

from ledger.passwords import Passwords
from ledger.projections.users import UserView
from tests.support import create_user


@pytest.fixture
async def user(pool: AsyncConnectionPool, passwords: Passwords) -> UserView:
    """A new user of the shared database."""
    async with pool.connection() as conn:
        return await create_user(conn, passwords)
