"""Throwaway PostgreSQL clusters and PgBouncers for the tests that need a server of their own:
Debian's binaries (PostgreSQL 15 in /usr/lib/postgresql/15/bin, `pgbouncer` from its package),
each on a free loopback port, in a temporary directory of its own, removed afterwards.

PostgreSQL and PgBouncer both refuse to run as root, so under root (CI, the sandbox) they run
as the `postgres` user, in a directory it owns; otherwise as the current user. A missing binary
fails the test, naming the package: `.ci/run` installs what is missing.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.support.servers import free_port

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
PGBOUNCER_PATHS = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")
SERVICE_USER = "postgres"  # who runs the servers when this process is root
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 30
RUN_TIMEOUT_S = 60


def _runs_as_root() -> bool:
    return os.geteuid() == 0


def _as_service_user() -> dict[str, object]:
    """Return subprocess keyword arguments that run a command as SERVICE_USER when we are root."""
    if not _runs_as_root():
        return {}
    user = pwd.getpwnam(SERVICE_USER)
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": [], "env": _service_env(user)}


def _service_env(user: pwd.struct_passwd) -> dict[str, str]:
    # A clean environment: root's PG* variables (PGDATA, PGPORT, PGHOST) must not steer the
    # service user's tools, and its HOME is its own.
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": user.pw_dir, "LC_ALL": "C.UTF-8"}


def run_as_service_user(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run a command as the servers' user; return it, or fail naming its output."""
    finished = subprocess.run(
        [str(arg) for arg in args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
        **_as_service_user(),  # type: ignore[arg-type]
    )
    assert finished.returncode == 0, (
        f"{args[0]} failed ({finished.returncode}):\n{finished.stdout}{finished.stderr}"
    )
    return finished


@contextmanager
def service_directory(prefix: str) -> Iterator[Path]:
    """Yield a new directory that the servers' user owns and can reach; remove it afterwards.

    Under /tmp rather than pytest's base directory: that one is private to root (0700), and the
    `postgres` user could not reach anything below it.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        path.chmod(0o755)
        if _runs_as_root():
            os.chown(path, pwd.getpwnam(SERVICE_USER).pw_uid, grp.getgrnam(SERVICE_USER).gr_gid)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def postgres_binary(name: str) -> Path:
    path = POSTGRES_BIN / name
    assert path.is_file(), f"{path} is missing: apt-get install -y postgresql-15"
    return path


def wait_until_accepting(host: str, port: int, what: str, log_path: Path) -> None:
    """Poll a TCP port until it accepts a connection; fail after START_TIMEOUT_S with the log."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            log = log_path.read_text(errors="replace") if log_path.exists() else "(no log)"
            raise AssertionError(
                f"{what} does not accept connections on {port} after {START_TIMEOUT_S}s:\n{log}"
            )
        time.sleep(0.1)


# PostgreSQL -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    """A running throwaway cluster: its data directory and port; `url(database)` reaches it."""

    data_dir: Path
    port: int

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.server.log"


def init_cluster(data_dir: Path) -> None:
    """Create a cluster in data_dir: superuser `postgres`, trust for local and loopback logins."""
    run_as_service_user(
        postgres_binary("initdb"), "-D", data_dir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"
    )


def append_settings(data_dir: Path, settings: Mapping[str, str]) -> None:
    """Append settings to the cluster's postgresql.conf (quoted: values with spaces and %
    survive, as an archive_command's do)."""
    lines = "".join(f"{name} = '{value.replace(chr(39), chr(39) * 2)}'\n" for name, value in settings.items())
    with (data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write(lines)


@contextmanager
def running_cluster(data_dir: Path, settings: Mapping[str, str] | None = None) -> Iterator[Cluster]:
    """Start the cluster in data_dir on a free loopback port (with these settings as -c options),
    yield it once it accepts connections, stop it (fast) afterwards."""
    cluster = Cluster(data_dir, free_port())
    options = {
        "listen_addresses": "127.0.0.1",
        "port": str(cluster.port),
        "unix_socket_directories": str(data_dir.parent),
        "fsync": "off",  # a test's cluster: a crash of the machine loses nothing worth keeping
        **(settings or {}),
    }
    pg_ctl = postgres_binary("pg_ctl")
    run_as_service_user(
        pg_ctl,
        "start",
        "-D",
        data_dir,
        "-l",
        cluster.log_path,
        "-t",
        str(START_TIMEOUT_S),
        "-o",
        " ".join(f"-c {name}={value}" for name, value in options.items()),
    )
    try:
        yield cluster
    finally:
        run_as_service_user(pg_ctl, "stop", "-D", data_dir, "-m", "fast", "-t", str(STOP_TIMEOUT_S))


@contextmanager
def throwaway_cluster(settings: Mapping[str, str] | None = None) -> Iterator[Cluster]:
    """Init and start a new cluster in a directory of its own; stop it and remove it afterwards."""
    with service_directory("ledger-cluster-") as root:
        init_cluster(root / "data")
        with running_cluster(root / "data", settings) as cluster:
            yield cluster


def wait_until_promoted(url: str) -> None:
    """Poll until the server at url has left recovery (it reached its recovery target and was
    promoted); fail with a message after START_TIMEOUT_S."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=2) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                if row is not None and not row[0]:
                    return
        except psycopg.OperationalError:
            pass  # still starting, or replaying before it is consistent
        assert time.monotonic() < deadline, f"{url} still in recovery after {START_TIMEOUT_S}s"
        time.sleep(0.2)


# PgBouncer ------------------------------------------------------------------------------------


def pgbouncer_binary() -> str:
    found = shutil.which("pgbouncer") or next((p for p in PGBOUNCER_PATHS if Path(p).is_file()), None)
    assert found, "pgbouncer is not installed: apt-get install -y pgbouncer"
    return found


@dataclass(frozen=True)
class PgBouncer:
    """A running PgBouncer: its port; `url(user, database)` reaches a database through it."""

    port: int
    directory: Path

    def url(self, user: str, database: str) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"


@contextmanager
def pgbouncer(
    server_host: str, server_port: int, users: list[str], pool_mode: str = "transaction", pool_size: int = 20
) -> Iterator[PgBouncer]:
    """Run PgBouncer on a free loopback port in front of every database of that server; yield it
    once it accepts connections; stop it (SIGTERM, at once) afterwards.

    Its clients log in as any of users without a password (auth_type trust: the server behind
    it trusts loopback logins), and PgBouncer logs in to PostgreSQL as the same user.
    """
    binary = pgbouncer_binary()
    with service_directory("ledger-pgbouncer-") as directory:
        port = free_port()
        auth_file = directory / "users.txt"
        auth_file.write_text("".join(f'"{user}" ""\n' for user in users))
        log_path = directory / "pgbouncer.log"
        config = directory / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"* = host={server_host} port={server_port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {auth_file}\n"
            f"pool_mode = {pool_mode}\n"
            f"default_pool_size = {pool_size}\n"
            "max_client_conn = 500\n"
            f"logfile = {log_path}\n"
            "log_connections = 0\n"
            "log_disconnections = 0\n"
        )
        if _runs_as_root():
            for path in (auth_file, config):
                os.chown(path, pwd.getpwnam(SERVICE_USER).pw_uid, grp.getgrnam(SERVICE_USER).gr_gid)
        process = subprocess.Popen(
            [binary, str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            **_as_service_user(),  # type: ignore[arg-type]
        )
        try:
            wait_until_accepting("127.0.0.1", port, "pgbouncer", log_path)
            yield PgBouncer(port, directory)
        finally:
            process.terminate()  # SIGTERM: PgBouncer's immediate shutdown
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
