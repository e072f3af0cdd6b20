"""The audit feed: a follower never misses an event and never sees one twice, also when a
transaction that drew an early position commits after later ones; and no secret leaves."""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal

import psycopg
import pytest
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from ledger import commands, db, errors
from ledger.audit import checksums, feed
from ledger.audit.feed import Cursor
from ledger.commands import NewUser
from ledger.config import CHEAPEST_ARGON2
from ledger.passwords import Passwords
from tests.support import (
    INSERT_EVENT_WITH_A_FRACTION,
    PASSWORD,
    TEST_WEBHOOK_SECRET,
    delivery,
    new_account_id,
    new_email,
)

SELECT_ALL_POSITIONS = "SELECT position FROM events ORDER BY position"


async def follow(conn: psycopg.AsyncConnection, after: Cursor, limit: int = 3) -> tuple[list[int], Cursor]:
    """Read the feed after a cursor until it has nothing more now; return positions and cursor."""
    positions = []
    while True:
        events = await feed.page(conn, after, limit)
        positions += [event.position for event in events]
        if not events:
            return positions, after
        after = events[-1].cursor


async def test_a_transaction_committed_late_is_still_handed_to_a_follower_once(own_database: str) -> None:
    passwords = Passwords(CHEAPEST_ARGON2)
    async with (
        await psycopg.AsyncConnection.connect(own_database, autocommit=True) as slow,
        await psycopg.AsyncConnection.connect(own_database, autocommit=True) as fast,
        await psycopg.AsyncConnection.connect(own_database, autocommit=True) as reader,
    ):
        seen, cursor = await follow(reader, feed.START)
        assert len(seen) == 3  # the seeds

        # The slow transaction draws its position first and stays open...
        await slow.execute("BEGIN")
        cursor_row = await (
            await slow.execute(
                "INSERT INTO events (stream, type, data) VALUES ('user-900', 'UserDeleted', "
                "'{\"user_id\": 900}') RETURNING position"
            )
        ).fetchone()
        assert cursor_row is not None
        slow_position = cursor_row[0]
        # ...while later transactions commit events with higher positions.
        user = await commands.register(fast, passwords, NewUser(new_email(), "Fast", PASSWORD))
        account_id = new_account_id()
        for amount in ("1.00", "2.00"):
            await commands.receive_payment(fast, delivery(user.id, account_id, amount))
        fast_positions = [p for (p,) in await (await reader.execute(SELECT_ALL_POSITIONS)).fetchall()][3:]
        assert fast_positions and min(fast_positions) > slow_position

        # A reader by position alone would now read past slow_position and never come back.
        # The feed holds everything back until the slow transaction ends.
        held, cursor = await follow(reader, cursor)
        assert held == []

        await slow.execute("COMMIT")
        rest, cursor = await follow(reader, cursor)
        seen += rest
        assert sorted(rest) == sorted([slow_position, *fast_positions])
        assert len(seen) == len(set(seen)) == 3 + 1 + len(fast_positions)

        # Nothing more, and nothing again.
        assert (await follow(reader, cursor))[0] == []


async def test_the_feed_waits_for_the_oldest_transaction_still_running_not_the_newest(
    own_database: str,
) -> None:
    append = "INSERT INTO events (stream, type, data) VALUES (%s, 'UserDeleted', '{\"user_id\": 901}')"
    async with (
        await psycopg.AsyncConnection.connect(own_database, autocommit=True) as oldest,
        await psycopg.AsyncConnection.connect(own_database, autocommit=True) as newest,
        await psycopg.AsyncConnection.connect(own_database, autocommit=True) as writer,
        await psycopg.AsyncConnection.connect(own_database, autocommit=True) as reader,
    ):
        _, cursor = await follow(reader, feed.START)
        await oldest.execute("BEGIN")
        await oldest.execute(append, ("user-901",))
        await writer.execute(append, ("user-902",))  # committed, after the oldest began
        await newest.execute("BEGIN")
        await newest.execute("SELECT pg_current_xact_id()")  # a transaction id above the writer's
        # A snapshot lists as running only transactions below the newest one that ended: so one
        # more ends, and the newest still running is listed beside the oldest.
        await writer.execute(append, ("user-903",))
        # The oldest may still commit: nothing after it is handed out yet, whatever ended since.
        assert (await follow(reader, cursor))[0] == []
        await oldest.execute("COMMIT")
        await newest.execute("COMMIT")
        assert len((await follow(reader, cursor))[0]) == 3


async def test_a_long_transaction_in_another_database_does_not_hold_the_feed_back(
    own_database: str, server_url: str
) -> None:
    other_database = db.create_database(server_url, "ledger_other")
    try:
        async with (
            await psycopg.AsyncConnection.connect(other_database, autocommit=True) as elsewhere,
            await psycopg.AsyncConnection.connect(own_database, autocommit=True) as conn,
        ):
            await elsewhere.execute("BEGIN")
            await elsewhere.execute("SELECT pg_current_xact_id()")  # holds an xid, as a writer does
            seen, _ = await follow(conn, feed.START)
            user = await commands.register(
                conn, Passwords(CHEAPEST_ARGON2), NewUser(new_email(), "N", PASSWORD)
            )
            seen_after, _ = await follow(conn, feed.START)
            await elsewhere.execute("ROLLBACK")
    finally:
        db.drop_database(server_url, other_database)
    registered = [p for p in seen_after if p not in seen]
    assert len(registered) == 1, "the new user's event was held back by another database's transaction"
    assert user.id


async def test_a_follower_of_concurrent_writers_gets_every_event_exactly_once(own_database: str) -> None:
    passwords = Passwords(CHEAPEST_ARGON2)
    pool = AsyncConnectionPool(own_database, min_size=6, max_size=6, open=False, kwargs={"autocommit": True})
    await pool.open(wait=True)
    writers_done = asyncio.Event()

    async def writer(index: int) -> None:
        async with pool.connection() as conn:
            user = await commands.register(conn, passwords, NewUser(new_email(), f"W{index}", PASSWORD))
            for _ in range(15):
                account_id = random.choice([index * 10**12 + 1, index * 10**12 + 2])
                await commands.receive_payment(conn, delivery(user.id, account_id, "0.01"))

    async def follower() -> list[int]:
        seen: list[int] = []
        cursor = feed.START
        async with pool.connection() as conn:
            while True:
                finished = writers_done.is_set()  # read before the page: a last pass after the end
                positions, cursor = await follow(conn, cursor, limit=7)
                seen += positions
                if finished:
                    return seen
                await asyncio.sleep(0)

    try:
        following = asyncio.create_task(follower())
        await asyncio.gather(*(writer(index) for index in range(1, 5)))
        writers_done.set()
        seen = await following
        async with pool.connection() as conn:
            everything = [p for (p,) in await (await conn.execute(SELECT_ALL_POSITIONS)).fetchall()]
    finally:
        await pool.close()
    assert len(seen) == len(set(seen)), "an event was handed out twice"
    assert sorted(seen) == everything, "an event was missed"


async def test_the_feed_carries_no_password_hash(own_database: str) -> None:
    passwords = Passwords(CHEAPEST_ARGON2)
    async with await psycopg.AsyncConnection.connect(own_database, autocommit=True) as conn:
        user = await commands.register(conn, passwords, NewUser(new_email(), "Secretive", PASSWORD))
        payment = delivery(user.id, new_account_id(), "5.00")
        await commands.receive_payment(conn, payment)
        stored_hash = (
            await (await conn.execute("SELECT password_hash FROM users WHERE id = %s", [user.id])).fetchone()
        )[0]
        page = await feed.page(conn, feed.START, 1000)
    text = repr([event.to_record() for event in page])
    assert stored_hash.startswith("$argon2") and stored_hash not in text and "$argon2" not in text
    assert TEST_WEBHOOK_SECRET.decode() not in text
    registered = next(e for e in page if e.type == "UserRegistered" and e.data["user_id"] == user.id)
    assert registered.data["password_hash"].startswith("sha256:")
    received = next(e for e in page if e.type == "PaymentReceived")
    assert received.data["signature"] == payment.signature  # the provider's evidence, kept
    assert received.data["amount"] == "5.00"  # as the provider wrote it, never a float


async def test_the_feed_orders_transaction_ids_as_numbers(own_database: str) -> None:
    """9 before 10 (as text, "10" sorts first): the order, the cursor and the head agree."""
    async with await psycopg.AsyncConnection.connect(own_database, autocommit=True) as conn:
        for xact_id, user_id in ((10, 910), (9, 909)):
            await conn.execute(
                "INSERT INTO events (stream, type, data, xact_id) "
                "VALUES (%(stream)s, 'UserDeleted', %(data)s, %(xact_id)s::text::xid8)",
                {"stream": f"user-{user_id}", "data": Jsonb({"user_id": user_id}), "xact_id": str(xact_id)},
            )
        seen, last = await follow(conn, feed.START, limit=1)
        rows = await (await conn.execute("SELECT position, xact_id::text::bigint FROM events")).fetchall()
        head = await checksums.feed_head(conn)
    xact_of = dict(rows)
    assert [xact_of[position] for position in seen[:2]] == [9, 10]
    assert [xact_of[p] for p in seen] == sorted(xact_of[p] for p in seen)
    assert sorted(seen) == sorted(xact_of)  # every event, once
    assert head.cursor == last == max(Cursor(x, p) for p, x in rows)


async def test_the_balances_through_the_feeds_last_event_are_the_live_ones(own_database: str) -> None:
    """A cursor's prefix holds the event at the cursor: through the head, nothing is left out."""
    async with await psycopg.AsyncConnection.connect(own_database, autocommit=True) as conn:
        await commands.receive_payment(conn, delivery(1, new_account_id(), "6.01"))  # the last event
        head = await checksums.feed_head(conn)
        through_head = await checksums.feed_prefix_balance_summary(conn, head.cursor)
        assert through_head == await checksums.live_balance_summary(conn)


async def test_the_balances_through_a_cursor_past_the_feeds_last_event_are_refused_naming_it(
    own_database: str,
) -> None:
    """A prefix past the head is not known yet; the refusal tells the auditor where the feed ends."""
    async with await psycopg.AsyncConnection.connect(own_database, autocommit=True) as conn:
        await commands.receive_payment(conn, delivery(1, new_account_id(), "6.01"))
        head = await checksums.feed_head(conn)
        past_head = Cursor(head.cursor.xact_id, head.cursor.position + 1)
        with pytest.raises(errors.InvalidQueryError) as refused:
            await checksums.feed_prefix_balance_summary(conn, past_head)
    assert refused.value.message == f"through is beyond the feed's last event ({head.cursor})."


SELECT_EVENTS_AS_WRITTEN = """
    SELECT position, stream, stream_version, type, transaction_id, encode(hash, 'hex'), recorded_at
    FROM events ORDER BY position
"""


async def test_the_feed_hands_out_each_event_whole_with_exact_numbers(own_database: str) -> None:
    async with await psycopg.AsyncConnection.connect(own_database, autocommit=True) as conn:
        await commands.receive_payment(conn, delivery(1, new_account_id(), "12.34"))
        await conn.execute(INSERT_EVENT_WITH_A_FRACTION)
        events = await feed.page(conn, feed.START, 1000)
        written = await (await conn.execute(SELECT_EVENTS_AS_WRITTEN)).fetchall()
    by_position = sorted(events, key=lambda event: event.position)
    assert [
        (e.position, e.stream, e.stream_version, e.type, e.transaction_id, e.hash, e.recorded_at)
        for e in by_position
    ] == written
    rate = by_position[-1].data["rate"]
    assert type(rate) is Decimal and rate == Decimal("1.10")
