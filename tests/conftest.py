"""The one database of the test session, and the fixtures built on it.

LEDGER_TEST_DATABASE_URL points at a PostgreSQL server (any database on it: the session
creates its own); without it, an embedded PostgreSQL is started in a temporary directory.
Either way the session works in a fresh database with sql/ applied, dropped at the end.
Tests share no rows: each makes its own users, emails and transaction ids.
"""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import falcon.testing
import pytest
from psycopg_pool import AsyncConnectionPool

from ledger import db
from ledger.config import CHEAPEST_ARGON2, REPO_ROOT, LoginThrottle, RequestThrottle, Settings
from ledger.http.app import create_app
from ledger.http.auth import Tokens
from ledger.passwords import Passwords
from ledger.projections.users import LoginRecord
from tests.log_scan import KNOWN_SECRETS, SessionLog, secrets_in
from tests.support import Person, create_user, webhooks_for_tests

# Every log record of the run, kept to be scanned for secrets when the session ends.
SESSION_LOG = pytest.StashKey[SessionLog]()
BASE_TEMP = pytest.StashKey[Path]()
JWT_SECRET = b"test-jwt-secret-" + uuid.uuid4().hex.encode() * 2


def pytest_configure(config: pytest.Config) -> None:
    handler = SessionLog()
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(min(root.level, logging.INFO))  # what `ledger serve` logs, the tests log
    config.stash[SESSION_LOG] = handler


# Each folder is a tier, marked so that a developer can run the fast ones alone:
# `pytest -m "unit or db or http"`. The markers are registered in pyproject.toml.
TIERS = ("unit", "property", "db", "http", "security", "e2e")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests_dir = Path(__file__).parent
    for item in items:
        if not item.path.is_relative_to(tests_dir):
            continue  # collected from elsewhere on the command line: not ours to mark
        tier = item.path.relative_to(tests_dir).parts[0]
        assert tier in TIERS, f"{item.nodeid}: a test lives in one of the folders {', '.join(TIERS)}"
        item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session", autouse=True)
def _remember_base_temp(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> None:
    request.config.stash[BASE_TEMP] = tmp_path_factory.getbasetemp()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a password, password hash, JWT or webhook secret reached any log:
    the records of this process, and the real servers' output (*.log under the base temp)."""
    handler = session.config.stash.get(SESSION_LOG, None)
    if handler is None:
        return
    logging.getLogger().removeHandler(handler)
    sources = {"this process's log records": "\n".join(handler.lines)}
    base_temp = session.config.stash.get(BASE_TEMP, None)
    if base_temp is not None:
        for path in sorted(base_temp.rglob("*.log")):
            sources[str(path)] = path.read_text(errors="replace")
    literals = (*KNOWN_SECRETS, JWT_SECRET.decode())
    findings = [
        f"{source}: {finding}" for source, text in sources.items() for finding in secrets_in(text, literals)
    ]
    # A run that only collects (`--collect-only`, as mutmut does before each run) runs no request.
    collected_only = session.config.option.collectonly
    ran_http_tests = not collected_only and any("tests/http/" in item.nodeid for item in session.items)
    if ran_http_tests and handler.access_lines == 0:
        findings.append("no access log line was captured: the scan would have seen nothing")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if findings:
        if reporter is not None:
            reporter.write_line(f"\nsecrets in the logs ({len(findings)}):", red=True)
            for finding in findings[:20]:
                reporter.write_line(f"  {finding}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif reporter is not None:
        logs = f"{len(handler.lines)} log records and {len(sources) - 1} server logs"
        reporter.write_line(f"\nlog scan: {logs}, no secret in them")


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


@pytest.fixture(scope="session")
def migrated_template(server_url: str) -> Iterator[str]:
    """A database with sql/ applied that nobody connects to: the tests' migrated databases are
    copies of it (CREATE DATABASE ... TEMPLATE), a fraction of the time of migrating each."""
    url = db.create_database(server_url, "ledger_template")
    db.migrate(url, REPO_ROOT / "sql")
    yield url
    db.drop_database(server_url, url)


@pytest.fixture(scope="session")
def new_migrated_database(server_url: str, migrated_template: str) -> Callable[[str], str]:
    """Return a function that creates a migrated database named prefix_<random>; the caller drops it."""
    return lambda prefix: db.create_database(server_url, prefix, copy_of=migrated_template)


@pytest.fixture(scope="session")
def database_url(server_url: str, new_migrated_database: Callable[[str], str]) -> Iterator[str]:
    url = new_migrated_database("ledger_test")
    yield url
    db.drop_database(server_url, url)


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=tmp_path_factory.mktemp("data"),
        migrations_dir=REPO_ROOT / "sql",
        # A rotated-out secret and the current one in each scheme: either must verify.
        webhooks=webhooks_for_tests(),
        jwt_secret=JWT_SECRET,
        token_ttl_s=3600,
        argon2=CHEAPEST_ARGON2,
        # Every falcon.testing request comes from 127.0.0.1: the suite's many failed logins must
        # not lock that address. The throttle's own tests set small limits.
        login_throttle=LoginThrottle(failures_per_email_max=1000, failures_per_address_max=10**6),
        registration_throttle=RequestThrottle(requests_per_address_max=10**6),
    )


@pytest.fixture(scope="session")
def passwords(settings: Settings) -> Passwords:
    return Passwords(settings.argon2)


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    # As the service serves: as the runtime role, with a statement timeout.
    pool = db.create_pool(db.serving_conninfo(database_url, statement_timeout_s=30), 2, 25)
    await pool.open(wait=True)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
def app(settings: Settings, pool: AsyncConnectionPool):  # noqa: ANN201
    return create_app(settings, pool, pool_lifespan=False)


@pytest.fixture
def own_database(server_url: str, new_migrated_database: Callable[[str], str]) -> Iterator[str]:
    """A migrated database of the test's own: for tests that damage projections on purpose,
    or whose failure must not spill into the shared database's replay checks."""
    url = new_migrated_database("ledger_own")
    yield url
    db.drop_database(server_url, url)


# HTTP: a falcon.testing conductor on the app, and users with tokens -------------------------


@pytest.fixture
async def client(app) -> AsyncIterator[falcon.testing.ASGIConductor]:  # noqa: ANN001
    async with falcon.testing.ASGIConductor(app) as conductor:
        yield conductor


@pytest.fixture(scope="session")
def tokens(settings: Settings) -> Tokens:
    return Tokens(settings.jwt_secret, settings.token_ttl_s)


@pytest.fixture
def make_person(
    pool: AsyncConnectionPool, passwords: Passwords, tokens: Tokens
) -> Callable[..., Awaitable[Person]]:
    async def make(is_admin: bool = False) -> Person:
        async with pool.connection() as conn:
            user = await create_user(conn, passwords, is_admin=is_admin)
        return Person(user, tokens.issue(LoginRecord(user.id, "", user.credentials_version)))

    return make


@pytest.fixture
async def person(make_person) -> Person:  # noqa: ANN001
    return await make_person()


@pytest.fixture
async def admin(make_person) -> Person:  # noqa: ANN001
    return await make_person(is_admin=True)
