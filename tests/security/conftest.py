"""Fixtures of the attacks: logins of the database roles the service and auditors use."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import psycopg.sql
import pytest


def _login_in(server_url: str, group: str) -> Iterator[str]:
    """Create a login that is a member of group (and nothing else); drop it afterwards."""
    name = f"ledger_test_{group.removeprefix('ledger_')}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(
                psycopg.sql.Identifier(name), psycopg.sql.Identifier(group)
            )
        )
    try:
        yield name
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("DROP ROLE {}").format(psycopg.sql.Identifier(name)))


@pytest.fixture(scope="session")
def runtime_login(server_url: str, database_url: str) -> Iterator[str]:
    """A login with the runtime role's rights, as production gives the service: its name."""
    yield from _login_in(server_url, "ledger_runtime")


@pytest.fixture(scope="session")
def auditor_login(server_url: str, database_url: str) -> Iterator[str]:
    """A login with the auditors' read-only role: its name."""
    yield from _login_in(server_url, "ledger_auditor")
