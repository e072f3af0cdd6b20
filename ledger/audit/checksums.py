"""The balance checksum that auditors compare with their own replay, and the feed's head.

The checksum is the SHA-256 of the lines "<account id>:<balance with 2 places>" of the users'
accounts (the system accounts, whose balances mirror theirs, are the trial balance's), joined by
"\\n" in order of account id: any script can compute it from a list of balances. It is taken of the
balances the service shows (the projections), or of the balances the log gives up to a cursor
of the feed (balances_in_log(), the ledger's balance rule), which is what `ledger replay --from`
prints for an export that ends at that cursor.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from psycopg import AsyncConnection
from psycopg.rows import class_row

from ledger import errors
from ledger.audit.feed import Cursor

# One checksum formula for both sources: with no cursor, the balances of the projections (the
# tables that unqualified names reach: the live ones, or a rebuild's); with one, the balances
# of the log up to it. PostgreSQL drops the branch that a NULL cursor turns off.
SELECT_BALANCE_SUMMARY = """
    WITH balances AS (
        SELECT id AS account_id, balance FROM accounts WHERE %(xact_id)s::text IS NULL
        UNION ALL
        SELECT account_id, balance
        FROM balances_in_log(NULL, NULL, %(xact_id)s::text::xid8, %(position)s)
        WHERE %(xact_id)s::text IS NOT NULL AND user_id IS NOT NULL
    )
    SELECT count(*) AS accounts,
           COALESCE(sum(balance), 0)::numeric(20,2) AS balance_total,
           encode(sha256(convert_to(
               COALESCE(string_agg(account_id || ':' || balance, E'\\n' ORDER BY account_id), ''), 'UTF8')),
               'hex') AS checksum
    FROM balances
"""

# The feed's head: the last event a follower can be handed now, and how many there are.
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
    checksum: str  # see SELECT_BALANCE_SUMMARY


@dataclass(frozen=True)
class FeedHead:
    cursor: Cursor
    events: int


async def live_balance_summary(conn: AsyncConnection) -> BalanceSummary:
    """Return the count, total and checksum of the balances the projections show now."""
    return await _summary(conn, {"xact_id": None, "position": None})


async def feed_prefix_balance_summary(conn: AsyncConnection, through: Cursor) -> BalanceSummary:
    """Return the count, total and checksum of the balances the feed up to through gives.

    Raises InvalidQueryError for a cursor beyond the feed's last event: that prefix is not
    known yet, and its checksum would be of nothing a replay could print. Up to the head, the
    prefix is final: every transaction that wrote it has ended (see ledger.audit.feed).
    """
    head = await feed_head(conn)
    if through > head.cursor:
        raise errors.InvalidQueryError(f"through is beyond the feed's last event ({head.cursor}).")
    return await _summary(conn, {"xact_id": str(through.xact_id), "position": through.position})


async def _summary(conn: AsyncConnection, params: dict[str, object]) -> BalanceSummary:
    async with conn.cursor(row_factory=class_row(BalanceSummary)) as cursor:
        await cursor.execute(SELECT_BALANCE_SUMMARY, params)
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
