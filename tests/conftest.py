"""The one database of the test session, and the fixtures built on it.

LEDGER_TEST_DATABASE_URL points at a PostgreSQL server (any database on it: the session
creates its own); without it, an embedded PostgreSQL is started in a temporary directory.
Either way the session works in a fresh database with sql/ applied, dropped at the end.
Tests share no rows: each makes its own users, emails and transaction ids.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import psycopg.sql
import pytest
from psycopg_pool import AsyncConnectionPool

from ledger import db
from ledger.config import CHEAPEST_ARGON2, PUBLIC_EXAMPLE_WEBHOOK_SECRET, REPO_ROOT, LoginThrottle, Settings
from ledger.http.app import create_app
from ledger.passwords import Passwords
from tests.support import TEST_WEBHOOK_SECRET


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """The URL of a PostgreSQL server's maintenance database, where databases can be created."""
    external = os.environ.get("LEDGER_TEST_DATABASE_URL")
    if external:
        yield external
        return
    with (
        tempfile.TemporaryDirectory(prefix="ledger-test-") as data_dir,
        db.embedded_postgres(Path(data_dir)) as url,
    ):
        yield url


def fresh_database(server_url: str, prefix: str) -> str:
    """Create an empty database on that server and return its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    return with_database(server_url, name)


def drop_database(server_url: str, database_url: str) -> None:
    name = database_name(database_url)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(name))
        )


def with_database(url: str, dbname: str) -> str:
    """Return the postgresql:// URL with another database name."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + dbname))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    url = fresh_database(server_url, "ledger_test")
    db.migrate(url, REPO_ROOT / "sql")
    yield url
    drop_database(server_url, url)


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=tmp_path_factory.mktemp("data"),
        migrations_dir=REPO_ROOT / "sql",
        # A rotated-out secret and the current one: either must verify.
        webhook_secrets=(TEST_WEBHOOK_SECRET, PUBLIC_EXAMPLE_WEBHOOK_SECRET.encode()),
        jwt_secret=b"test-jwt-secret-" + uuid.uuid4().hex.encode() * 2,
        token_ttl_s=3600,
        argon2=CHEAPEST_ARGON2,
        # Every falcon.testing request comes from 127.0.0.1: the suite's many failed logins must
        # not lock that address. The throttle's own tests set small limits.
        login_throttle=LoginThrottle(failures_per_email_max=1000, failures_per_address_max=10**6),
    )


@pytest.fixture(scope="session")
def passwords(settings: Settings) -> Passwords:
    return Passwords(settings.argon2)


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = db.create_pool(database_url, 2, 25)
    await pool.open(wait=True)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
def app(settings: Settings, pool: AsyncConnectionPool):  # noqa: ANN201
    return create_app(settings, pool, pool_lifespan=False)
