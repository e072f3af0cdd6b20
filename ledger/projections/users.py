"""The users view: its read queries. It is kept up to date by apply_user_event() (sql/0022),
in the transaction that appends each user event, and rebuilt from the log by the same function.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import AsyncConnection
from psycopg.rows import class_row

# The token's user: live, and with the credentials version the token was issued for (a
# password or email change since revokes it). accounts.SELECT_ACCOUNTS_OF_LIVE_USER applies the
# same rule inside the one statement of GET /user/accounts.
SELECT_TOKEN_USER = """
    SELECT id, email, full_name, is_admin, is_auditor, credentials_version
    FROM users WHERE id = %(user_id)s AND NOT deleted AND credentials_version = %(credentials_version)s
"""

SELECT_LOGIN_BY_EMAIL = """
    SELECT id, password_hash, credentials_version
    FROM users WHERE lower(email) = lower(%(email)s) AND NOT deleted
"""

SELECT_USERS_PAGE = """
    SELECT id, email, full_name, is_admin, is_auditor, credentials_version
    FROM users
    WHERE NOT deleted AND id > %(after)s
    ORDER BY id
    LIMIT %(limit)s
"""


@dataclass(frozen=True)
class UserView:
    id: int
    email: str
    full_name: str
    is_admin: bool
    is_auditor: bool
    credentials_version: int


@dataclass(frozen=True)
class LoginRecord:
    id: int
    password_hash: str
    credentials_version: int


async def token_user(conn: AsyncConnection, user_id: int, credentials_version: int) -> UserView | None:
    """Return the live user with that id and credentials version, or None (a revoked token)."""
    async with conn.cursor(row_factory=class_row(UserView)) as cursor:
        await cursor.execute(
            SELECT_TOKEN_USER, {"user_id": user_id, "credentials_version": credentials_version}
        )
        return await cursor.fetchone()


async def login_record(conn: AsyncConnection, email: str) -> LoginRecord | None:
    """Return what a login checks for the live user with that email (any case), or None."""
    async with conn.cursor(row_factory=class_row(LoginRecord)) as cursor:
        await cursor.execute(SELECT_LOGIN_BY_EMAIL, {"email": email})
        return await cursor.fetchone()


async def users_page(conn: AsyncConnection, after: int, limit: int) -> list[UserView]:
    """Return up to limit live users with an id above after, by id."""
    async with conn.cursor(row_factory=class_row(UserView)) as cursor:
        await cursor.execute(SELECT_USERS_PAGE, {"after": after, "limit": limit})
        return await cursor.fetchall()
