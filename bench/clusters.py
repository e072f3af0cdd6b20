"""PostgreSQL clusters, PgBouncers and pg_auto_failover formations of the bench's and the tests'
own: Debian's binaries (PostgreSQL 15 in /usr/lib/postgresql/15/bin, `pgbouncer`, `pg_autoctl`
from their packages), each on a free loopback port, in a temporary directory of its own,
removed afterwards.

PostgreSQL and PgBouncer both refuse to run as root, so under root (CI, the sandbox) they run
as the `postgres` user, in a directory it owns; otherwise as the current user. A missing binary
fails the test, naming the package: `.ci/run` installs what is missing.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench.server import free_port

PG_AUTOCTL = Path("/usr/bin/pg_autoctl")
HOST = "127.0.0.1"
START_TIMEOUT_S = 60

# The monitor's timers (milliseconds). Its defaults take about 50 s to promote the standby
# after a node is lost: 20 s before a node counts as unhealthy, then 30 s for the lost primary
# to demote itself. Both exist so that a primary that is only cut off from the monitor stops
# writing before another one starts. Here a lost primary cannot acknowledge a write in the
# meantime anyway: with synchronous replication, a commit waits for the standby, which stops
# following it once the monitor starts the promotion. So the timers can be short: a failed
# health check after 1 s, retried once, unhealthy after 3 s, demoted after 3 s more.
FAST_FAILOVER_SETTINGS = {
    "pgautofailover.health_check_period": 1000,
    "pgautofailover.health_check_timeout": 1000,
    "pgautofailover.health_check_max_retries": 1,
    "pgautofailover.health_check_retry_delay": 500,
    "pgautofailover.node_considered_unhealthy_timeout": 3000,
    "pgautofailover.primary_demote_timeout": 3000,
}


SELECT_NODE_STATES = "SELECT nodename, reportedstate, goalstate FROM pgautofailover.node"


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
        **_as_service_user(),  # type: ignore[call-overload]
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
            **_as_service_user(),  # type: ignore[call-overload]
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


class ClusterError(RuntimeError):
    """A formation did not reach the states it should."""


def missing_binaries() -> list[str]:
    """Return Debian's packages that the formation needs and this machine lacks."""
    missing = []
    if not (POSTGRES_BIN / "initdb").exists():
        missing.append("postgresql-15")
    if not PG_AUTOCTL.exists():
        missing.append("postgresql-15-auto-failover")
    return missing


def _formation_env(home: Path) -> dict[str, str]:
    # pg_autoctl keeps its state under XDG_* and finds pg_ctl on PATH; a PATH through root's
    # own directories would make it stumble on directories the postgres user may not read.
    return {
        "PATH": f"{POSTGRES_BIN}:/usr/bin:/bin",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "share"),
        "XDG_RUNTIME_DIR": str(home / "run"),
        "LC_ALL": "C.UTF-8",
    }


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().splitlines()[0])


def wait_until_connectable(conninfo: str) -> None:
    """Poll until a PostgreSQL login at conninfo succeeds; fail after START_TIMEOUT_S."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with psycopg.connect(conninfo, connect_timeout=2):
                return
        except psycopg.OperationalError as error:
            if time.monotonic() > deadline:
                raise ClusterError(f"{conninfo} does not accept logins: {error}") from None
        time.sleep(0.2)


@contextmanager
def primary_and_standby() -> Iterator[tuple[Cluster, Cluster]]:
    """Yield a running primary and a hot standby streaming from it (asynchronously); stop both
    and remove their files afterwards."""
    with service_directory("ledger-replica-") as root:
        init_cluster(root / "primary")
        with running_cluster(root / "primary", {"wal_level": "replica"}) as primary:
            run_as_service_user(
                postgres_binary("pg_basebackup"),
                "-d",
                primary.url(),
                "-D",
                root / "standby",
                "-R",
                "-X",
                "stream",
                "--no-sync",
            )
            with running_cluster(root / "standby", {"hot_standby": "on"}) as standby:
                wait_until_connectable(standby.url())
                yield primary, standby


# A pg_auto_failover formation ---------------------------------------------------------------


@dataclass
class Node:
    name: str
    port: int
    data_dir: Path
    keeper: subprocess.Popen[bytes]


class Formation:
    """A pg_auto_failover monitor and two nodes: a primary and a synchronous standby.

    Use as a context manager (see formation()); lose() kills a node outright.
    """

    def __init__(self, home: Path) -> None:
        self.home = home
        self.monitor_port = free_port()
        self.nodes: list[Node] = []
        self._keepers: list[subprocess.Popen[bytes]] = []
        self._lost: set[str] = set()

    @property
    def monitor_url(self) -> str:
        return f"postgresql://autoctl_node@{HOST}:{self.monitor_port}/pg_auto_failover?sslmode=disable"

    def database_url(self, database: str) -> str:
        """A URL over every node that connects to whichever is the primary now."""
        hosts = ",".join(f"{HOST}:{node.port}" for node in self.nodes)
        return f"postgresql://postgres@{hosts}/{database}?target_session_attrs=read-write&connect_timeout=2"

    def start(self, node_count: int = 2) -> None:
        self._keep(
            "monitor",
            ["create", "monitor", "--pgdata", str(self.home / "monitor"), "--pgport", str(self.monitor_port)],
        )
        wait_until_connectable(self.monitor_url)
        monitor_owner = f"postgresql://postgres@{HOST}:{self.monitor_port}/pg_auto_failover"
        with psycopg.connect(monitor_owner, autocommit=True) as conn:
            for name, value in FAST_FAILOVER_SETTINGS.items():
                conn.execute(f"ALTER SYSTEM SET {name} = {value}")
            conn.execute("SELECT pg_reload_conf()")
        for number in range(1, node_count + 1):
            name, port = f"node{number}", free_port()
            data_dir = self.home / name
            keeper = self._keep(
                name,
                [
                    "create",
                    "postgres",
                    "--pgdata",
                    str(data_dir),
                    "--pgport",
                    str(port),
                    "--name",
                    name,
                    "--monitor",
                    self.monitor_url,
                ],
            )
            self.nodes.append(Node(name, port, data_dir, keeper))
            if number == 1:  # the first node becomes the primary; the others join it as standbys
                self.wait_for({name: "single"})
        self.wait_for({self.nodes[0].name: "primary", **{n.name: "secondary" for n in self.nodes[1:]}})

    def _keep(self, name: str, arguments: list[str]) -> subprocess.Popen[bytes]:
        # Trust authentication and no TLS: every server listens on the loopback address only.
        command = [str(PG_AUTOCTL), *arguments, "--hostname", HOST, "--listen", HOST]
        command += ["--auth", "trust", "--no-ssl", "--run"]
        with (self.home / f"{name}.log").open("wb") as log:
            keeper = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.home,
                start_new_session=True,  # killing its group kills everything it started
                **{**_as_service_user(), "env": _formation_env(self.home)},  # type: ignore[call-overload]
            )
        self._keepers.append(keeper)
        return keeper

    def states(self) -> dict[str, tuple[str, str]]:
        """Return each node's (reported state, goal state), as the monitor has them."""
        with psycopg.connect(self.monitor_url, autocommit=True, connect_timeout=2) as conn:
            rows = conn.execute(SELECT_NODE_STATES).fetchall()
        return {name: (reported, goal) for name, reported, goal in rows}

    def wait_for(self, wanted: dict[str, str], timeout_s: float = 90) -> float:
        """Wait until each named node reports (and aims at) its wanted state; return the seconds waited."""
        started = time.monotonic()
        states: dict[str, tuple[str, str]] = {}
        while time.monotonic() - started < timeout_s:
            try:
                states = self.states()
            except psycopg.Error:
                states = {}
            if all(states.get(name) == (state, state) for name, state in wanted.items()):
                return time.monotonic() - started
            for node in self.nodes:
                if node.keeper.poll() is not None and node.name not in self._lost:
                    raise ClusterError(f"the keeper of {node.name} exited; see the logs in {self.home}")
            time.sleep(0.3)
        raise ClusterError(f"the formation did not reach {wanted} in {timeout_s}s: {states}")

    def primary(self) -> Node:
        states = self.states()
        for node in self.nodes:
            if states.get(node.name, ("", ""))[0] in ("primary", "wait_primary", "single"):
                return node
        raise ClusterError(f"no primary: {states}")

    def lose(self, node: Node) -> None:
        """Kill the node outright, as a lost machine: its postmaster and its keeper, SIGKILL."""
        os.kill(postmaster_pid(node.data_dir), signal.SIGKILL)
        os.killpg(node.keeper.pid, signal.SIGKILL)
        self._lost.add(node.name)
        node.keeper.wait()

    def stop(self) -> None:
        for keeper in reversed(self._keepers):
            if keeper.poll() is None:
                os.killpg(keeper.pid, signal.SIGTERM)
        for keeper in self._keepers:
            try:
                keeper.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(keeper.pid, signal.SIGKILL)
                keeper.wait()
        # A postmaster whose keeper died first may still run: stop it from its pid file.
        for data_dir in [self.home / "monitor", *(node.data_dir for node in self.nodes)]:
            with suppress(FileNotFoundError, ProcessLookupError, ValueError, IndexError):
                os.kill(postmaster_pid(data_dir), signal.SIGKILL)


@contextmanager
def formation() -> Iterator[Formation]:
    """Yield a running pg_auto_failover formation (monitor, primary, synchronous standby); stop it
    and remove its files afterwards."""
    with service_directory("ledger-formation-") as home:
        running = Formation(home)
        try:
            running.start()
            yield running
        finally:
            running.stop()
