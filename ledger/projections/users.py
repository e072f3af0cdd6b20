"""The users view: apply(event) for user events, and its read queries.

apply() is used both live (in the command's transaction) and by the rebuild, so the SQL here
names tables without a schema: during a rebuild they resolve to the rebuild's temporary tables.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import AsyncConnection
from psycopg.rows import class_row

from ledger.events import UserDeleted, UserRegistered, UserUpdated

INSERT_USER = """
    INSERT INTO users (id, email, full_name, password_hash, is_admin, is_auditor, credentials_version)
    VALUES (%(user_id)s, %(email)s, %(full_name)s, %(password_hash)s, %(is_admin)s, %(is_auditor)s, 1)
"""

UPDATE_USER = """
    UPDATE users SET
        email = COALESCE(%(email)s, email),
        full_name = COALESCE(%(full_name)s, full_name),
        password_hash = COALESCE(%(password_hash)s, password_hash),
        is_admin = COALESCE(%(is_admin)s, is_admin),
        is_auditor = COALESCE(%(is_auditor)s, is_auditor),
        credentials_version = %(credentials_version)s
    WHERE id = %(user_id)s
"""

MARK_USER_DELETED = "UPDATE users SET deleted = true WHERE id = %(user_id)s"

# The token's user: live, and with the credentials version the token was issued for (a
# password or email change since revokes it). accounts.SELECT_ACCOUNTS_OF_LIVE_USER applies the
# same rule inside the one statement of GET /user/accounts.
SELECT_TOKEN_USER = """
    SELECT id, email, full_name, is_admin, is_auditor, credentials_version
    FROM users WHERE id = %(user_id)s AND NOT deleted AND credentials_version = %(credentials_version)s
"""

SELECT_LIVE_USER_FOR_UPDATE = """
    SELECT id, email, full_name, is_admin, is_auditor, credentials_version
    FROM users WHERE id = %(user_id)s AND NOT deleted
    FOR UPDATE
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


async def apply(conn: AsyncConnection, event: UserRegistered | UserUpdated | UserDeleted) -> None:
    """Bring the users table up to date with one user event."""
    match event:
        case UserRegistered():
            await conn.execute(INSERT_USER, vars(event))
        case UserUpdated():
            await conn.execute(UPDATE_USER, vars(event))
        case UserDeleted():
            await conn.execute(MARK_USER_DELETED, vars(event))


async def live_user_for_update(conn: AsyncConnection, user_id: int) -> UserView | None:
    """Return the live (not deleted) user with that id, its row locked, or None."""
    async with conn.cursor(row_factory=class_row(UserView)) as cursor:
        await cursor.execute(SELECT_LIVE_USER_FOR_UPDATE, {"user_id": user_id})
        return await cursor.fetchone()


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
