"""The accounts read that is also the token check: one statement, three answers."""

from __future__ import annotations

from decimal import Decimal

from psycopg_pool import AsyncConnectionPool

from ledger import commands
from ledger.projections import accounts
from ledger.projections.accounts import AccountView
from ledger.projections.users import UserView
from tests.support import delivery, new_account_id


async def test_a_live_user_with_the_tokens_version_gets_their_accounts_by_id(
    pool: AsyncConnectionPool, user: UserView
) -> None:
    low, high = sorted([new_account_id(), new_account_id()])
    async with pool.connection() as conn:
        assert await accounts.accounts_of_live_user(conn, user.id, user.credentials_version) == []
        await commands.receive_payment(conn, delivery(user.id, high, "2.50"))
        await commands.receive_payment(conn, delivery(user.id, low, "0.01"))
        found = await accounts.accounts_of_live_user(conn, user.id, user.credentials_version)
    assert found == [
        AccountView(low, user.id, Decimal("0.01")),
        AccountView(high, user.id, Decimal("2.50")),
    ]


async def test_another_credentials_version_or_a_deleted_user_finds_nothing(
    pool: AsyncConnectionPool, user: UserView
) -> None:
    async with pool.connection() as conn:
        await commands.receive_payment(conn, delivery(user.id, new_account_id(), "1.00"))
        assert await accounts.accounts_of_live_user(conn, user.id, user.credentials_version + 1) is None
        await commands.delete_user(conn, acting_user_id=-1, user_id=user.id)
        assert await accounts.accounts_of_live_user(conn, user.id, user.credentials_version) is None


async def test_an_unknown_user_finds_nothing(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        assert await accounts.accounts_of_live_user(conn, 2**62, 1) is None
