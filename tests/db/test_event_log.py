"""The event log: append-only by the database's own hand, seeded by the migrations."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import AsyncConnection


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET data = '{}' WHERE position = (SELECT min(position) FROM events)",
        "DELETE FROM events WHERE position = (SELECT min(position) FROM events)",
        "TRUNCATE events",
        "TRUNCATE events CASCADE",
    ],
)
def test_the_database_refuses_to_change_or_remove_events(database_url: str, statement: str) -> None:
    # The session user is a superuser: the trigger, not a permission, is what refuses.
    with psycopg.connect(database_url) as conn:
        before = conn.execute(
            "SELECT count(*), md5(string_agg(data::text, ',' ORDER BY position)) FROM events"
        ).fetchone()
        with pytest.raises(psycopg.errors.RestrictViolation, match="append-only"):
            conn.execute(statement)
        conn.rollback()
        after = conn.execute(
            "SELECT count(*), md5(string_agg(data::text, ',' ORDER BY position)) FROM events"
        ).fetchone()
    assert before == after


def test_the_seeded_users_exist_as_events_and_as_views(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        seeded = conn.execute(
            "SELECT stream, type, data->>'email', (data->>'is_admin')::boolean FROM events "
            "WHERE stream IN ('user-1', 'user-2', 'account-1') "
            "AND type IN ('UserRegistered', 'AccountOpened') "
            "ORDER BY position"
        ).fetchall()
        users = conn.execute(
            "SELECT id, email, full_name, is_admin FROM users WHERE id IN (1, 2) ORDER BY id"
        ).fetchall()
        account = conn.execute("SELECT user_id FROM accounts WHERE id = 1").fetchone()
    assert seeded == [
        ("user-1", "UserRegistered", "testuser@example.com", False),
        ("user-2", "UserRegistered", "testadmin@example.com", True),
        ("account-1", "AccountOpened", None, None),
    ]
    assert users == [
        (1, "testuser@example.com", "Test User", False),
        (2, "testadmin@example.com", "Test Admin", True),
    ]
    assert account == (1,)


APPEND_EVENT = """
    INSERT INTO events (stream, type, data) VALUES ('user-987654321', 'UserDeleted', '{"user_id": 987654321}')
    RETURNING position
"""


async def test_appends_get_increasing_positions(database_url: str) -> None:
    # As the tables' owner: the service's role may not append directly.
    async with await AsyncConnection.connect(database_url) as conn, conn.transaction():
        first = await (await conn.execute(APPEND_EVENT)).fetchone()
        second = await (await conn.execute(APPEND_EVENT)).fetchone()
        assert first is not None and second is not None
        assert second[0] > first[0]
        raise psycopg.Rollback()  # leave nothing behind
