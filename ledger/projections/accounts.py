"""Accounts with balances and payments: read queries.

The live updates of these tables happen in one SQL function, receive_payment()
(sql/0003), so that a webhook delivery is one round trip; `rebuild` recomputes them set-based.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from psycopg import AsyncConnection
from psycopg.rows import class_row

from ledger import db, errors
from ledger.projections.users import UserView

# The accounts of a user who is live with that credentials version, in one round trip that is
# also the token's revocation check: no row at all when the user was deleted or the version
# moved on (a password or email change); one row of NULLs when the user has no account.
SELECT_ACCOUNTS_OF_LIVE_USER = """
    SELECT a.id, a.user_id, a.balance
    FROM users AS u LEFT JOIN accounts AS a ON a.user_id = u.id
    WHERE u.id = %(user_id)s AND NOT u.deleted AND u.credentials_version = %(credentials_version)s
    ORDER BY a.id
"""

SELECT_ACCOUNTS_OF_USERS = """
    SELECT id, user_id, balance FROM accounts WHERE user_id = ANY(%(user_ids)s) ORDER BY id
"""

SELECT_PAYMENTS_PAGE_OF_USER = """
    SELECT id, transaction_id, user_id, account_id, amount, created_at
    FROM payments
    WHERE user_id = %(user_id)s AND id < %(before)s
    ORDER BY id DESC
    LIMIT %(limit)s
"""


SELECT_PAYMENTS_PAGE = """
    SELECT id, transaction_id, user_id, account_id, amount, created_at
    FROM payments
    WHERE (%(user_id)s::bigint IS NULL OR user_id = %(user_id)s) AND id < %(before)s
    ORDER BY id DESC
    LIMIT %(limit)s
"""


# An account's postings, newest first (the postings view over payments, transfers and
# reversals: a Merge Append of one index range per kind).
SELECT_POSTINGS_PAGE = """
    SELECT position AS id, transaction_id, kind, amount, balance_after, created_at
    FROM postings
    WHERE account_id = %(account_id)s AND position < %(before)s
    ORDER BY position DESC
    LIMIT %(limit)s
"""

# The live user who owns a (user's) account: none for an unknown account, a system account or
# an account of a deleted user, which leave every view.
SELECT_LIVE_OWNER = """
    SELECT a.user_id FROM accounts AS a JOIN users AS u ON u.id = a.user_id
    WHERE a.id = %(account_id)s AND NOT u.deleted
"""


@dataclass(frozen=True)
class AccountView:
    id: int
    user_id: int
    balance: Decimal


@dataclass(frozen=True)
class PaymentView:
    id: int
    transaction_id: str
    user_id: int
    account_id: int
    amount: Decimal
    created_at: datetime


async def accounts_of_live_user(
    conn: AsyncConnection, user_id: int, credentials_version: int
) -> list[AccountView] | None:
    """Return the user's accounts, by id; None when no live user has that id and version."""
    cursor = db.statement_cursor(conn)  # the hottest read: see db.PooledConnection
    await cursor.execute(
        SELECT_ACCOUNTS_OF_LIVE_USER, {"user_id": user_id, "credentials_version": credentials_version}
    )
    rows = await cursor.fetchall()
    if not rows:
        return None
    return [AccountView(*row) for row in rows if row[0] is not None]


@dataclass(frozen=True)
class PostingView:
    id: int  # the position of the ledger transaction's event
    transaction_id: str
    kind: str  # payment, transfer, reversal
    amount: Decimal  # signed: what the account gained
    balance_after: Decimal
    created_at: datetime


async def live_owner(conn: AsyncConnection, account_id: int) -> int | None:
    """Return the id of the live user who owns the account, or None."""
    cursor = await conn.execute(SELECT_LIVE_OWNER, {"account_id": account_id})
    row = await cursor.fetchone()
    return None if row is None else row[0]


async def postings_page(
    conn: AsyncConnection, viewer: UserView, account_id: int, before: int, limit: int
) -> list[PostingView]:
    """Return up to limit of the account's postings with an id below before, newest first.

    The viewer sees its own accounts, an admin or auditor any user's. Raises
    AccountNotFoundError otherwise, as for an account that does not exist: another user's
    accounts are not even said to exist.
    """
    owner = await live_owner(conn, account_id)
    if owner is None or not (owner == viewer.id or viewer.is_admin or viewer.is_auditor):
        raise errors.AccountNotFoundError()
    async with conn.cursor(row_factory=class_row(PostingView)) as cursor:
        await cursor.execute(
            SELECT_POSTINGS_PAGE, {"account_id": account_id, "before": before, "limit": limit}
        )
        return await cursor.fetchall()


async def accounts_of_users(conn: AsyncConnection, user_ids: Sequence[int]) -> list[AccountView]:
    """Return the accounts of all these users, by id."""
    async with conn.cursor(row_factory=class_row(AccountView)) as cursor:
        await cursor.execute(SELECT_ACCOUNTS_OF_USERS, {"user_ids": list(user_ids)})
        return await cursor.fetchall()


async def payments_page(conn: AsyncConnection, user_id: int, before: int, limit: int) -> list[PaymentView]:
    """Return up to limit of the user's payments with an id below before, newest first."""
    async with conn.cursor(row_factory=class_row(PaymentView)) as cursor:
        await cursor.execute(
            SELECT_PAYMENTS_PAGE_OF_USER, {"user_id": user_id, "before": before, "limit": limit}
        )
        return await cursor.fetchall()


async def all_payments_page(
    conn: AsyncConnection, user_id: int | None, before: int, limit: int
) -> list[PaymentView]:
    """Return up to limit payments (of that user, or of everyone) with an id below before,
    newest first."""
    async with conn.cursor(row_factory=class_row(PaymentView)) as cursor:
        await cursor.execute(SELECT_PAYMENTS_PAGE, {"user_id": user_id, "before": before, "limit": limit})
        return await cursor.fetchall()
