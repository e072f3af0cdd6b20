"""Exports of the feed, and an independent replay of one in an empty database."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from decimal import Decimal

import simplejson
from psycopg import AsyncConnection
from psycopg.rows import class_row

from ledger.audit import feed
from ledger.audit.checksums import BalanceSummary, live_balance_summary
from ledger.audit.feed import Cursor
from ledger.projections.accounts import AccountView
from ledger.projections.rebuild import SELECT_ACCOUNTS, rebuild

EXPORT_PAGE_SIZE = 5000

COUNT_EVENTS = "SELECT count(*) FROM events"

CREATE_STAGING_TABLE = """
    CREATE TEMP TABLE exported (
        line           bigint NOT NULL,
        xact_id        xid8 NOT NULL,
        position       bigint NOT NULL,
        stream         text NOT NULL,
        stream_version integer NOT NULL,
        type           text NOT NULL,
        data           jsonb NOT NULL,
        transaction_id text,
        hash           text NOT NULL,
        recorded_at    timestamptz NOT NULL
    ) ON COMMIT DROP
"""

COPY_STAGING = """
    COPY exported (line, xact_id, position, stream, stream_version, type, data, transaction_id, hash,
                   recorded_at)
    FROM STDIN
"""

# In stream order, so that this database's trigger chains each event to its predecessor and
# computes the hash anew: the export's hashes are then checked against an independent
# computation, not trusted.
INSERT_EXPORTED_EVENTS = """
    INSERT INTO events (position, xact_id, stream, type, data, transaction_id, recorded_at)
    OVERRIDING SYSTEM VALUE
    SELECT position, xact_id, stream, type, data, transaction_id, recorded_at
    FROM exported
    ORDER BY position
"""

SELECT_HASH_MISMATCHES = """
    SELECT x.line, x.position, x.stream
    FROM exported AS x JOIN events AS e USING (position)
    WHERE e.stream_version <> x.stream_version OR encode(e.hash, 'hex') <> x.hash
    ORDER BY x.position
    LIMIT %(limit)s
"""

RESTART_POSITIONS = "SELECT setval(pg_get_serial_sequence('events', 'position'), max(position)) FROM events"


class ExportError(ValueError):
    """A line of an export that is not an exported event."""


@dataclass(frozen=True)
class LoadReport:
    events: int
    last_cursor: Cursor
    hash_mismatches: list[tuple[int, int, str]]  # (line, position, stream), the first ones


def line(event: feed.FeedEvent) -> str:
    """Return event as one line of an export (JSON, exact numbers, no newline)."""
    return simplejson.dumps(event.to_record(), use_decimal=True, separators=(",", ":"))


async def lines(conn: AsyncConnection, after: Cursor) -> AsyncIterator[str]:
    """Yield the feed after that cursor as export lines, page by page, until it is exhausted."""
    while True:
        events = await feed.page(conn, after, EXPORT_PAGE_SIZE)
        for event in events:
            yield line(event)
        if len(events) < EXPORT_PAGE_SIZE:
            return
        after = events[-1].cursor


async def load(conn: AsyncConnection, export_lines: Iterable[str], mismatch_limit: int = 20) -> LoadReport:
    """Append an export's events to this database's (empty) log, chaining them anew.

    Raises ExportError for a line that is not an exported event, ValueError for a log that
    is not empty. The caller owns the transaction.
    """
    cursor = await conn.execute(COUNT_EVENTS)
    row = await cursor.fetchone()
    assert row is not None
    if row[0]:
        raise ValueError("the database's event log is not empty: replay an export into an empty database")
    await conn.execute(CREATE_STAGING_TABLE)
    count, last = 0, feed.START
    async with conn.cursor().copy(COPY_STAGING) as copy:
        for number, text in enumerate(export_lines, start=1):
            if not text.strip():
                continue
            at, record = _record(number, text)
            await copy.write_row(record)
            count, last = count + 1, at
    await conn.execute(INSERT_EXPORTED_EVENTS)
    await conn.execute(RESTART_POSITIONS)
    cursor = await conn.execute(SELECT_HASH_MISMATCHES, {"limit": mismatch_limit})
    mismatches = [
        (line_number, position, stream) for line_number, position, stream in await cursor.fetchall()
    ]
    return LoadReport(count, last, mismatches)


def _record(number: int, text: str) -> tuple[Cursor, tuple[object, ...]]:
    """Return the cursor and the staging row of export line number; raise ExportError."""
    try:
        event = json.loads(text, parse_float=Decimal)
        at = Cursor.parse(event["cursor"])
        if at is None or not isinstance(event["data"], dict):
            raise ExportError(f"line {number}: not an exported event")
        return at, (
            number,
            at.xact_id,
            int(event["position"]),
            str(event["stream"]),
            int(event["stream_version"]),
            str(event["type"]),
            simplejson.dumps(event["data"], use_decimal=True),
            event["transaction_id"],
            str(event["hash"]),
            str(event["recorded_at"]),
        )
    except ExportError:
        raise
    except (ValueError, KeyError, TypeError) as error:
        raise ExportError(f"line {number}: not an exported event ({error})") from error


@dataclass(frozen=True)
class ExportReplay:
    load: LoadReport
    accounts: list[AccountView]
    summary: BalanceSummary


async def replay_export(conn: AsyncConnection, export_lines: Iterable[str]) -> ExportReplay:
    """Load an export into this empty database's log and build its projections from it.

    Everything commits together or not at all. Raises ExportError for a bad line and
    ValueError for a database whose log is not empty. conn: as for rebuild.replay().
    """
    async with conn.transaction():
        loaded = await load(conn, export_lines)
        await rebuild(conn)
        async with conn.cursor(row_factory=class_row(AccountView)) as cursor:
            await cursor.execute(SELECT_ACCOUNTS)
            rebuilt_accounts = await cursor.fetchall()
        summary = await live_balance_summary(conn)
    return ExportReplay(loaded, rebuilt_accounts, summary)
