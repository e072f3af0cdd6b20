"""The command functions reach their rows by key whatever the planner's statistics say: on a
database analyzed while it held no payments, no transfers and no reversals, a burst of them on
one connection (whose PL/pgSQL plans outlive the burst) reads no table from end to end."""

from __future__ import annotations

import uuid
from decimal import Decimal

import psycopg
from psycopg import AsyncConnection

from ledger import commands
from ledger.commands import Reversal, Transfer, UserChanges
from ledger.passwords import Passwords
from tests.support import create_user, delivery, new_account_id

# More calls of each function than PL/pgSQL's five custom plans before it keeps a generic one.
CALLS = 8


async def test_no_command_scans_a_table_after_statistics_taken_when_it_was_empty(
    own_database: str, passwords: Passwords
) -> None:
    async with await AsyncConnection.connect(own_database, autocommit=True) as conn:
        payer = await create_user(conn, passwords)
        payee = await create_user(conn, passwords)
    with psycopg.connect(own_database, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")  # payments, transfers and reversals: known to be empty

    async with await AsyncConnection.connect(own_database, autocommit=True) as conn:
        scanned_before = await tables_scanned(conn, own_database)
        source, destination = new_account_id(), new_account_id()
        for _ in range(CALLS):
            await commands.receive_payment(conn, delivery(payer.id, source, "10.00"))
        await commands.receive_payment(conn, delivery(payee.id, destination, "1.00"))
        for _ in range(CALLS):
            transfer = Transfer(source, destination, Decimal("1.00"))
            await commands.transfer_money(conn, payer.id, f"key-{uuid.uuid4()}", transfer)
        assert await tables_scanned(conn, own_database) == scanned_before

        # The test's own look-up may scan: only what the commands do after it counts.
        cursor = await conn.execute("SELECT id FROM payments WHERE account_id = %s", (source,))
        payment_ids = [payment_id for (payment_id,) in await cursor.fetchall()]
        scanned_before = await tables_scanned(conn, own_database)
        for payment_id in payment_ids:
            reversal = Reversal(payment_id, Decimal("0.01"), "a refund")
            await commands.reverse_payment(conn, payer.id, f"key-{uuid.uuid4()}", reversal)
        for n in range(CALLS):
            await commands.update_user(conn, passwords, payee.id, UserChanges(full_name=f"Payee {n}"))
        await commands.delete_user(conn, payer.id, payee.id)
        assert await tables_scanned(conn, own_database) == scanned_before


async def tables_scanned(conn: AsyncConnection, database_url: str) -> dict[str, int]:
    """Return how many sequential scans each table has had, conn's included: conn's counts are
    written out at once, then read from another connection."""
    await conn.execute("SELECT pg_stat_force_next_flush()")  # done before the answer comes back
    async with await AsyncConnection.connect(database_url, autocommit=True) as reader:
        cursor = await reader.execute("SELECT relname, seq_scan FROM pg_stat_user_tables")
        return dict(await cursor.fetchall())
