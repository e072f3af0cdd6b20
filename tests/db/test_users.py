"""User commands against PostgreSQL: the log's order stays one that a replay can apply."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import psycopg

from ledger import commands, errors
from ledger.commands import NewUser
from ledger.config import CHEAPEST_ARGON2
from ledger.passwords import Passwords
from ledger.projections.rebuild import replay
from tests.support import PASSWORD

ROUNDS = 30
RIVALS = 8  # registrations of the same email racing each deletion


async def test_registrations_racing_the_deletion_that_frees_their_email_replay(own_database: str) -> None:
    """A registration may wait on the unique email index for a deletion in flight. Its event
    must land after that deletion's, or a replay would find the email taken."""
    passwords = Passwords(CHEAPEST_ARGON2)
    connections = [
        await psycopg.AsyncConnection.connect(own_database, autocommit=True) for _ in range(RIVALS + 1)
    ]
    try:
        for _ in range(ROUNDS):
            email = f"contested-{uuid.uuid4().hex[:8]}@example.com"
            holder = await commands.register(connections[0], passwords, NewUser(email, "Holder", PASSWORD))

            async def register_rival(conn: psycopg.AsyncConnection, email: str) -> None:
                with contextlib.suppress(errors.EmailTakenError):
                    await commands.register(conn, passwords, NewUser(email, "Rival", PASSWORD))

            await asyncio.gather(
                commands.delete_user(connections[0], 2, holder.id),
                *(register_rival(conn, email) for conn in connections[1:]),
            )
    finally:
        for conn in connections:
            await conn.close()

    async with await psycopg.AsyncConnection.connect(own_database, autocommit=True) as conn:
        cursor = await conn.execute("SELECT count(*) FROM users WHERE full_name = 'Rival'")
        rivals_registered = (await cursor.fetchone())[0]  # type: ignore[index]
    assert rivals_registered >= 1, "no rival ever got the email: the race was not run"
    async with await psycopg.AsyncConnection.connect(
        own_database, autocommit=True, prepare_threshold=None
    ) as conn:
        report = await replay(conn)
    assert report.equal, report.differences


SELECT_POSITIONS_DRAWN = (
    "SELECT COALESCE(last_value, 0) FROM pg_sequences WHERE sequencename = 'events_position_seq'"
)
SELECT_IS_WAITING_ON_A_LOCK = "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %(pid)s"
WAIT_TIMEOUT_S = 10.0


async def test_a_registration_waits_for_an_email_change_in_flight_before_drawing_its_position(
    own_database: str,
) -> None:
    """Deterministic form of the race above: while a registration waits on the unique email
    index for another transaction, it must not have appended its event yet."""
    passwords = Passwords(CHEAPEST_ARGON2)
    email = f"moving-{uuid.uuid4().hex[:8]}@example.com"
    async with (
        await psycopg.AsyncConnection.connect(own_database, autocommit=True) as holder_conn,
        await psycopg.AsyncConnection.connect(own_database, autocommit=True) as rival_conn,
        await psycopg.AsyncConnection.connect(own_database, autocommit=True) as observer,
    ):
        holder = await commands.register(holder_conn, passwords, NewUser(email, "Holder", PASSWORD))
        async with holder_conn.transaction():  # the email change stays uncommitted in here
            await commands.update_user(
                holder_conn, passwords, holder.id, commands.UserChanges(email="moved-" + email)
            )
            drawn_before = (await (await observer.execute(SELECT_POSITIONS_DRAWN)).fetchone())[0]  # type: ignore[index]
            rival = asyncio.create_task(
                commands.register(rival_conn, passwords, NewUser(email, "Rival", PASSWORD))
            )
            deadline = asyncio.get_running_loop().time() + WAIT_TIMEOUT_S
            while True:
                cursor = await observer.execute(
                    SELECT_IS_WAITING_ON_A_LOCK, {"pid": rival_conn.info.backend_pid}
                )
                if (await cursor.fetchone()) == (True,):
                    break
                assert asyncio.get_running_loop().time() < deadline, "the rival never waited on a lock"
                await asyncio.sleep(0.01)
            drawn_while_waiting = (await (await observer.execute(SELECT_POSITIONS_DRAWN)).fetchone())[0]  # type: ignore[index]
            assert drawn_while_waiting == drawn_before, "the registration appended before it waited"
        registered = await rival  # the email was freed: the rival gets it
        assert registered.email == email

    async with await psycopg.AsyncConnection.connect(
        own_database, autocommit=True, prepare_threshold=None
    ) as conn:
        report = await replay(conn)
    assert report.equal, report.differences
