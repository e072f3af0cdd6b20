"""The past, computed from the log: balances and users as they were at a cut of the log, and
the balance checksum that auditors compare with their own replay.

A cut is "every event up to this position" or "every event recorded up to this time" (the
time its transaction started, which is when PostgreSQL stamps recorded_at).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from psycopg import AsyncConnection
from psycopg.rows import class_row

from ledger import errors
from ledger.events.feed import Cursor
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

# The same predicate is written out in each query below (SQL is never built from pieces):
#   (%(through_position)s::bigint IS NULL OR e.position <= %(through_position)s)
#   AND (%(through_time)s::timestamptz IS NULL OR e.recorded_at <= %(through_time)s)

# An account's balance then. Owners never change, so the live accounts table says which
# accounts a user may have had; an account is shown if it was opened within the cut.
#
# At a position: the balance_after of the account's last payment at or before it, one lookup in
# payments_by_account. Payments to one account take turns on its row lock and draw their
# positions while holding it, so position order is the order in which balance_after grew.
SELECT_ACCOUNTS_OF_USERS_AT_POSITION = """
    SELECT a.id, a.user_id,
           COALESCE((SELECT p.balance_after
                     FROM payments AS p
                     WHERE p.account_id = a.id AND p.id <= %(through_position)s
                     ORDER BY p.id DESC
                     LIMIT 1),
                    0)::numeric(20,2) AS balance
    FROM accounts AS a
    WHERE a.user_id = ANY(%(user_ids)s)
      AND EXISTS (SELECT 1 FROM events AS o
                  WHERE o.stream = 'account-' || a.id AND o.stream_version = 1
                    AND o.position <= %(through_position)s)
    ORDER BY a.id
"""

# At a time: the sum of the account's payments recorded by then. recorded_at is when the
# writing transaction started, which need not follow the lock order above, so balance_after
# cannot answer it. (Bounded like every request by the statement timeout.)
SELECT_ACCOUNTS_OF_USERS_AT_TIME = """
    SELECT a.id, a.user_id,
           COALESCE((SELECT sum((p.data->>'amount')::numeric)
                     FROM events AS p
                     WHERE p.stream = 'account-' || a.id AND p.type = 'PaymentReceived'
                       AND p.recorded_at <= %(through_time)s),
                    0)::numeric(20,2) AS balance
    FROM accounts AS a
    WHERE a.user_id = ANY(%(user_ids)s)
      AND EXISTS (SELECT 1 FROM events AS o
                  WHERE o.stream = 'account-' || a.id AND o.stream_version = 1
                    AND o.recorded_at <= %(through_time)s)
    ORDER BY a.id
"""

# A user then: registered within the cut, not deleted within it, each field as its latest
# event in the cut set it. Every user ever registered has a row in users (deleted ones too).
SELECT_USERS_PAGE_AT_CUT = """
    SELECT u.id,
           (SELECT e.data->>'email' FROM events AS e
            WHERE e.stream = 'user-' || u.id AND e.data ? 'email'
              AND (%(through_position)s::bigint IS NULL OR e.position <= %(through_position)s)
              AND (%(through_time)s::timestamptz IS NULL OR e.recorded_at <= %(through_time)s)
            ORDER BY e.stream_version DESC LIMIT 1) AS email,
           (SELECT e.data->>'full_name' FROM events AS e
            WHERE e.stream = 'user-' || u.id AND e.data ? 'full_name'
              AND (%(through_position)s::bigint IS NULL OR e.position <= %(through_position)s)
              AND (%(through_time)s::timestamptz IS NULL OR e.recorded_at <= %(through_time)s)
            ORDER BY e.stream_version DESC LIMIT 1) AS full_name,
           (SELECT (e.data->>'is_admin')::boolean FROM events AS e
            WHERE e.stream = 'user-' || u.id AND e.data ? 'is_admin'
              AND (%(through_position)s::bigint IS NULL OR e.position <= %(through_position)s)
              AND (%(through_time)s::timestamptz IS NULL OR e.recorded_at <= %(through_time)s)
            ORDER BY e.stream_version DESC LIMIT 1) AS is_admin,
           COALESCE((SELECT (e.data->>'is_auditor')::boolean FROM events AS e
                     WHERE e.stream = 'user-' || u.id AND e.data ? 'is_auditor'
                       AND (%(through_position)s::bigint IS NULL OR e.position <= %(through_position)s)
                       AND (%(through_time)s::timestamptz IS NULL OR e.recorded_at <= %(through_time)s)
                     ORDER BY e.stream_version DESC LIMIT 1), false) AS is_auditor,
           0 AS credentials_version
    FROM users AS u
    WHERE u.id > %(after)s
      AND EXISTS (SELECT 1 FROM events AS r
                  WHERE r.stream = 'user-' || u.id AND r.stream_version = 1
                    AND (%(through_position)s::bigint IS NULL OR r.position <= %(through_position)s)
                    AND (%(through_time)s::timestamptz IS NULL OR r.recorded_at <= %(through_time)s))
      AND NOT EXISTS (SELECT 1 FROM events AS d
                      WHERE d.stream = 'user-' || u.id AND d.type = 'UserDeleted'
                        AND (%(through_position)s::bigint IS NULL OR d.position <= %(through_position)s)
                        AND (%(through_time)s::timestamptz IS NULL OR d.recorded_at <= %(through_time)s))
    ORDER BY u.id
    LIMIT %(limit)s
"""

# The balance checksum: SHA-256 of the lines "<account id>:<balance with 2 places>", joined
# by "\n" in order of account id. Any script can compute it from a list of balances.
SELECT_LIVE_BALANCE_SUMMARY = """
    SELECT count(*) AS accounts,
           COALESCE(sum(balance), 0)::numeric(20,2) AS balance_total,
           encode(sha256(convert_to(
               COALESCE(string_agg(id || ':' || balance, E'\n' ORDER BY id), ''), 'UTF8')), 'hex') AS checksum
    FROM accounts
"""

# The same over the feed's prefix up to a cursor: what a replay of an export that ends at
# that cursor must print.
SELECT_FEED_PREFIX_BALANCE_SUMMARY = """
    WITH prefix AS (
        SELECT type, data FROM events
        WHERE (xact_id, position) <= (%(xact_id)s::text::xid8, %(position)s)
          AND xact_id < feed_horizon()
    ), balances AS (
        SELECT (o.data->>'account_id')::bigint AS id, COALESCE(c.balance, 0)::numeric(20,2) AS balance
        FROM prefix AS o
        LEFT JOIN (SELECT (data->>'account_id')::bigint AS id, sum((data->>'amount')::numeric) AS balance
                   FROM prefix WHERE type = 'PaymentReceived' GROUP BY 1) AS c
               ON c.id = (o.data->>'account_id')::bigint
        WHERE o.type = 'AccountOpened'
    )
    SELECT count(*) AS accounts,
           COALESCE(sum(balance), 0)::numeric(20,2) AS balance_total,
           encode(sha256(convert_to(
               COALESCE(string_agg(id || ':' || balance, E'\n' ORDER BY id), ''), 'UTF8')), 'hex') AS checksum
    FROM balances
"""

# The feed's head: the last event a follower can be handed now.
SELECT_FEED_HEAD = """
    SELECT xact_id::text AS xact_id_text, position, (SELECT count(*) FROM events
                                     WHERE xact_id < feed_horizon())
    FROM events
    WHERE xact_id < feed_horizon()
    ORDER BY events.xact_id DESC, events.position DESC  -- the xid8 order, not its text's
    LIMIT 1
"""


@dataclass(frozen=True)
class BalanceSummary:
    accounts: int
    balance_total: Decimal
    checksum: str  # see SELECT_LIVE_BALANCE_SUMMARY


@dataclass(frozen=True)
class FeedHead:
    cursor: Cursor
    events: int


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


async def live_balance_summary(conn: AsyncConnection) -> BalanceSummary:
    """Return the count, total and checksum of the balances the service shows now."""
    async with conn.cursor(row_factory=class_row(BalanceSummary)) as cursor:
        await cursor.execute(SELECT_LIVE_BALANCE_SUMMARY)
        summary = await cursor.fetchone()
    assert summary is not None
    return summary


async def feed_prefix_balance_summary(conn: AsyncConnection, through: Cursor) -> BalanceSummary:
    """Return the count, total and checksum of the balances the feed up to through gives.

    Raises InvalidQueryError for a cursor beyond the feed's last event: that prefix is not
    known yet, and its checksum would be of nothing a replay could print.
    """
    head = await feed_head(conn)
    if through > head.cursor:
        raise errors.InvalidQueryError(f"through is beyond the feed's last event ({head.cursor}).")
    async with conn.cursor(row_factory=class_row(BalanceSummary)) as cursor:
        await cursor.execute(
            SELECT_FEED_PREFIX_BALANCE_SUMMARY,
            {"xact_id": str(through.xact_id), "position": through.position},
        )
        summary = await cursor.fetchone()
    assert summary is not None
    return summary


async def feed_head(conn: AsyncConnection) -> FeedHead:
    """Return the cursor of the feed's last event now (the start if it is empty), and its size."""
    cursor = await conn.execute(SELECT_FEED_HEAD)
    row = await cursor.fetchone()
    if row is None:
        return FeedHead(Cursor(0, 0), 0)
    return FeedHead(Cursor(int(row[0]), row[1]), row[2])
