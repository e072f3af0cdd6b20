"""The audit feed: the event log in an order that a follower can page through without gaps.

Positions are drawn when an event is appended, not when its transaction commits: a slow
transaction can commit position 7 after a reader already saw 8. So the feed orders events by
(writing transaction id, position) and hands out only the events of transactions older than
the oldest transaction still running in this database (feed_horizon(), sql/0005). Every
transaction below that line has ended, so nothing can ever appear behind a cursor: a follower
never misses an event and, since the cursor only moves forward, never sees one twice. No
writer waits for any of this; a long writing transaction only delays the readers.

It reads audit_events (sql/0022), the log with password hashes replaced by their SHA-256
(redacted(), sql/0005): what an auditor's database role may read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row

# "<transaction id>-<position>": at most 19 and 18 digits, which xid8 and bigint always hold.
CURSOR_PATTERN = r"^(0|[0-9]{1,19}-[0-9]{1,18})$"
CURSOR = re.compile(r"([0-9]{1,19})-([0-9]{1,18})")

SELECT_FEED_PAGE = """
    SELECT xact_id::text AS xact_id_text, position, stream, stream_version, type,
           data::text AS data_text, transaction_id, encode(hash, 'hex') AS hash, recorded_at
    FROM audit_events AS e
    WHERE (xact_id, position) > (%(xact_id)s::text::xid8, %(position)s)
      AND xact_id < feed_horizon()
    ORDER BY e.xact_id, e.position  -- the columns: the xid8 order, not its text's
    LIMIT %(limit)s
"""

COUNT_FEED_EVENTS = """
    SELECT count(*) FROM audit_events
    WHERE (xact_id, position) > (%(xact_id)s::text::xid8, %(position)s)
      AND xact_id < feed_horizon()
"""


@dataclass(frozen=True, order=True)
class Cursor:
    """Where a follower stands: the last (transaction id, position) it has seen."""

    xact_id: int
    position: int

    def __str__(self) -> str:
        return f"{self.xact_id}-{self.position}"

    @classmethod
    def parse(cls, text: str) -> Cursor | None:
        """Return the cursor written as text ("0" is the start), or None if it is not one."""
        if text == "0":
            return START
        match = CURSOR.fullmatch(text)
        if match is None:
            return None
        return cls(int(match[1]), int(match[2]))


START = Cursor(0, 0)


@dataclass(frozen=True)
class _FeedRow:
    xact_id_text: str
    position: int
    stream: str
    stream_version: int
    type: str
    data_text: str
    transaction_id: str | None
    hash: str
    recorded_at: datetime


@dataclass(frozen=True)
class FeedEvent:
    cursor: Cursor
    position: int
    stream: str
    stream_version: int
    type: str
    data: dict[str, Any]  # redacted; numbers are Decimal or int, never float
    transaction_id: str | None
    hash: str  # hex SHA-256 of this link of the stream's chain
    recorded_at: datetime

    def to_record(self) -> dict[str, Any]:
        """Return the event as the feed and the export write it (a JSON-ready object)."""
        return {
            "cursor": str(self.cursor),
            "position": self.position,
            "stream": self.stream,
            "stream_version": self.stream_version,
            "type": self.type,
            "data": self.data,
            "transaction_id": self.transaction_id,
            "hash": self.hash,
            "recorded_at": self.recorded_at.isoformat(),
        }


async def page(conn: AsyncConnection, after: Cursor, limit: int) -> list[FeedEvent]:
    """Return up to limit events that follow after in feed order."""
    async with conn.cursor(row_factory=class_row(_FeedRow)) as cursor:
        await cursor.execute(
            SELECT_FEED_PAGE, {"xact_id": str(after.xact_id), "position": after.position, "limit": limit}
        )
        rows = await cursor.fetchall()
    return [
        FeedEvent(
            cursor=Cursor(int(row.xact_id_text), row.position),
            position=row.position,
            stream=row.stream,
            stream_version=row.stream_version,
            type=row.type,
            data=json.loads(row.data_text, parse_float=Decimal),
            transaction_id=row.transaction_id,
            hash=row.hash,
            recorded_at=row.recorded_at,
        )
        for row in rows
    ]


async def count_after(conn: AsyncConnection, after: Cursor) -> int:
    """Return how many events the feed holds after that cursor now."""
    cursor = await conn.execute(
        COUNT_FEED_EVENTS, {"xact_id": str(after.xact_id), "position": after.position}
    )
    row = await cursor.fetchone()
    assert row is not None
    return row[0]
