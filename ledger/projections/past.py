"""The past, computed from the log: users and balances as they were at a cut of the log.

A cut is "every event up to this position" or "every event recorded up to this time" (the
time its transaction started, which is when PostgreSQL stamps recorded_at). The predicate is
in_log_cut(); balances come from the postings view (sql/definitions/20-event-data.sql).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from psycopg import AsyncConnection
from psycopg.rows import class_row

from ledger.projections import users
from ledger.projections.accounts import AccountView
from ledger.projections.users import UserView


@dataclass(frozen=True)
class Cut:
    """Where the log is cut: at a position, at a time, or (both None) nowhere."""

    position: int | None = None
    time: datetime | None = None

    @property
    def params(self) -> dict[str, object]:
        return {"through_position": self.position, "through_time": self.time}


EVERYTHING = Cut()

# At a position: the balance_after of the account's last posting at or before it, one lookup
# per kind of posting (payments_by_account, transfers_*_account, reversals_by_account), not a
# sum over the log. Movements of one account take turns on its row lock and draw their
# positions while holding it, so position order is the order in which balance_after changed.
# Owners never change, so the live accounts table says which accounts a user may have had; an
# account is shown if it was opened within the cut.
SELECT_ACCOUNTS_OF_USERS_AT_POSITION = """
    SELECT a.id, a.user_id,
           COALESCE((SELECT p.balance_after
                     FROM postings AS p
                     WHERE p.account_id = a.id AND p.position <= %(through_position)s
                     ORDER BY p.position DESC
                     LIMIT 1),
                    0)::numeric(20,2) AS balance
    FROM accounts AS a
    WHERE a.user_id = ANY(%(user_ids)s)
      AND EXISTS (SELECT 1 FROM events AS o
                  WHERE o.stream = account_stream(a.id) AND o.stream_version = 1
                    AND o.position <= %(through_position)s)
    ORDER BY a.id
"""

# At a time: the sum of the account's postings recorded by then (the balance rule of
# balances_in_log(), over the postings view: one index range per account). recorded_at is when
# the writing transaction started, which need not follow the lock order above, so balance_after
# cannot answer it. (Bounded like every request by the statement timeout.)
SELECT_ACCOUNTS_OF_USERS_AT_TIME = """
    SELECT a.id, a.user_id,
           COALESCE((SELECT sum(p.amount) FROM postings AS p
                     WHERE p.account_id = a.id AND p.created_at <= %(through_time)s),
                    0)::numeric(20,2) AS balance
    FROM accounts AS a
    WHERE a.user_id = ANY(%(user_ids)s)
      AND EXISTS (SELECT 1 FROM events AS o
                  WHERE o.stream = account_stream(a.id) AND o.stream_version = 1
                    AND o.recorded_at <= %(through_time)s)
    ORDER BY a.id
"""

# A user then: registered within the cut, not deleted within it, each field as its latest
# event in the cut set it. Every user ever registered has a row in users (deleted ones too).
SELECT_USERS_PAGE_AT_CUT = """
    WITH user_events AS NOT MATERIALIZED (  -- read through the stream index, user by user
        SELECT * FROM log_user_events AS e
        WHERE in_log_cut(e.position, e.recorded_at, e.xact_id,
                         %(through_position)s, %(through_time)s, NULL, NULL)
    )
    SELECT u.id,
           (SELECT e.email FROM user_events AS e WHERE e.stream = u.stream AND e.email IS NOT NULL
            ORDER BY e.stream_version DESC LIMIT 1) AS email,
           (SELECT e.full_name FROM user_events AS e WHERE e.stream = u.stream AND e.full_name IS NOT NULL
            ORDER BY e.stream_version DESC LIMIT 1) AS full_name,
           (SELECT e.is_admin FROM user_events AS e WHERE e.stream = u.stream AND e.is_admin IS NOT NULL
            ORDER BY e.stream_version DESC LIMIT 1) AS is_admin,
           COALESCE((SELECT e.is_auditor FROM user_events AS e
                     WHERE e.stream = u.stream AND e.is_auditor IS NOT NULL
                     ORDER BY e.stream_version DESC LIMIT 1), false) AS is_auditor,
           0 AS credentials_version
    FROM (SELECT id, user_stream(id) AS stream FROM users WHERE id > %(after)s) AS u
    WHERE EXISTS (SELECT 1 FROM user_events AS r WHERE r.stream = u.stream AND r.stream_version = 1)
      AND NOT EXISTS (SELECT 1 FROM user_events AS d WHERE d.stream = u.stream AND d.type = 'UserDeleted')
    ORDER BY u.id
    LIMIT %(limit)s
"""


async def accounts_of_users_at(conn: AsyncConnection, user_ids: Sequence[int], cut: Cut) -> list[AccountView]:
    """Return the accounts these users had at the cut, with their balances then, by id."""
    assert (cut.position is None) != (cut.time is None), "a cut at a position or at a time"
    query = (
        SELECT_ACCOUNTS_OF_USERS_AT_POSITION if cut.position is not None else SELECT_ACCOUNTS_OF_USERS_AT_TIME
    )
    async with conn.cursor(row_factory=class_row(AccountView)) as cursor:
        await cursor.execute(query, {"user_ids": list(user_ids), **cut.params})
        return await cursor.fetchall()


async def accounts_of_live_user_at(
    conn: AsyncConnection, user_id: int, credentials_version: int, cut: Cut
) -> list[AccountView] | None:
    """Return the user's accounts at the cut, or None if no live user has that id and
    credentials version now (the token's user: see accounts.accounts_of_live_user)."""
    if await users.token_user(conn, user_id, credentials_version) is None:
        return None
    return await accounts_of_users_at(conn, [user_id], cut)


async def users_page_at(conn: AsyncConnection, cut: Cut, after: int, limit: int) -> list[UserView]:
    """Return up to limit users live at the cut, as they were then, with an id above after."""
    async with conn.cursor(row_factory=class_row(UserView)) as cursor:
        await cursor.execute(SELECT_USERS_PAGE_AT_CUT, {"after": after, "limit": limit, **cut.params})
        return await cursor.fetchall()
