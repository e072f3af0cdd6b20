"""The append-only event store: the SQL that appends to the log and reads it back."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from ledger.events.types import Event, from_data, to_data

INSERT_EVENT = """
    INSERT INTO events (stream, type, data)
    VALUES (%(stream)s, %(type)s, %(data)s)
    RETURNING position
"""

SELECT_EVENTS_OF_TYPES = """
    SELECT position, type, data
    FROM events
    WHERE type = ANY(%(types)s)
      AND (%(through_position)s::bigint IS NULL OR position <= %(through_position)s)
      AND (%(through_time)s::timestamptz IS NULL OR recorded_at <= %(through_time)s)
    ORDER BY position
"""


async def append(conn: AsyncConnection, event: Event) -> int:
    """Append event to the log and return its position (payments go through receive_payment)."""
    assert event.type != "PaymentReceived", "payments are appended by receive_payment()"
    cursor = await conn.execute(
        INSERT_EVENT, {"stream": event.stream, "type": event.type, "data": Jsonb(to_data(event))}
    )
    row = await cursor.fetchone()
    assert row is not None
    return row[0]


async def read(
    conn: AsyncConnection,
    types: Sequence[str],
    through_position: int | None = None,
    through_time: datetime | None = None,
) -> AsyncIterator[tuple[int, Event]]:
    """Yield (position, event) for every event of these types, in log order, up to a cut."""
    params = {"types": list(types), "through_position": through_position, "through_time": through_time}
    async with conn.cursor(name="read_events") as cursor:
        await cursor.execute(SELECT_EVENTS_OF_TYPES, params)
        async for position, type_name, data in cursor:
            yield position, from_data(type_name, data)
