"""PostgreSQL clusters of the drill's and the tests' own, from Debian's packages, on loopback ports.

- Formation: a pg_auto_failover monitor and its nodes (a primary and a synchronous standby),
  each node run by its keeper (`pg_autoctl ... --run`).
- Cluster: a plain cluster (initdb, pg_ctl), and a streaming standby of it (pg_basebackup).

PostgreSQL refuses to run as root: when this process is root, every server runs as the
`postgres` user, in a directory that user owns.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from bench.server import free_port

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
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


class ClusterError(RuntimeError):
    """A server did not start, or a formation did not reach the states it should."""


def missing_binaries() -> list[str]:
    """Return what the clusters need and this machine lacks (Debian's packages to install)."""
    missing = []
    if not (POSTGRES_BIN / "initdb").exists():
        missing.append("postgresql-15")
    if not PG_AUTOCTL.exists():
        missing.append("postgresql-15-auto-failover")
    return missing


def _server_user() -> str | None:
    """The user the servers run as: `postgres` when this process is root, else ourselves."""
    return "postgres" if os.geteuid() == 0 else None


@contextmanager
def server_directory(prefix: str) -> Iterator[Path]:
    """Yield a new temporary directory that the servers' user owns; remove it after."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        user = _server_user()
        if user:
            entry = pwd.getpwnam(user)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _environment(home: Path) -> dict[str, str]:
    # pg_autoctl keeps its state under XDG_* and finds pg_ctl on PATH; a PATH through root's
    # own directories would make it stumble on directories the postgres user may not read.
    return {
        "PATH": f"{POSTGRES_BIN}:/usr/bin:/bin",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "share"),
        "XDG_RUNTIME_DIR": str(home / "run"),
        "LANG": "C.UTF-8",
    }


def run_as_server_user(command: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool as the servers' user; raise ClusterError with its output if it fails."""
    result = subprocess.run(
        command, env=_environment(home), user=_server_user(), cwd=home, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise ClusterError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
    return result


def spawn_as_server_user(command: list[str], home: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """Start a long-running PostgreSQL tool as the servers' user, in a process group of its own
    (so that killing the group kills everything it started)."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            command,
            env=_environment(home),
            user=_server_user(),
            cwd=home,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def url(port: int, database: str = "postgres", user: str = "postgres") -> str:
    return f"postgresql://{user}@{HOST}:{port}/{database}"


def wait_until_accepting(conninfo: str, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with psycopg.connect(conninfo, connect_timeout=2):
                return
        except psycopg.OperationalError as error:
            if time.monotonic() > deadline:
                raise ClusterError(f"{conninfo} does not accept connections: {error}") from None
        time.sleep(0.2)


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().splitlines()[0])


# A plain cluster and its streaming standby --------------------------------------------------


@dataclass
class Cluster:
    """A cluster in data_dir on a loopback port; start() and stop() with pg_ctl."""

    home: Path
    data_dir: Path
    port: int
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return url(self.port)

    def initdb(self) -> None:
        run_as_server_user(
            [
                str(POSTGRES_BIN / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
            self.home,
        )

    def start(self) -> None:
        options = " ".join(
            [f"-c listen_addresses={HOST}", f"-p {self.port}", f"-k {self.home}"]
            + [f"-c {name}={value}" for name, value in self.settings.items()]
        )
        log = self.home / f"{self.data_dir.name}.log"
        run_as_server_user(
            [
                str(POSTGRES_BIN / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(log),
                "-o",
                options,
                "-w",
                "-t",
                str(START_TIMEOUT_S),
                "start",
            ],
            self.home,
        )

    def stop(self, mode: str = "fast") -> None:
        if (self.data_dir / "postmaster.pid").exists():
            run_as_server_user(
                [str(POSTGRES_BIN / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"], self.home
            )

    def reload(self, **settings: str) -> None:
        """Change server settings (ALTER SYSTEM) and reload the configuration."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            for name, value in settings.items():
                conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
            conn.execute("SELECT pg_reload_conf()")


@contextmanager
def primary_and_standby(prefix: str = "ledger-cluster-") -> Iterator[tuple[Cluster, Cluster]]:
    """Yield a running primary and a hot standby streaming from it (asynchronously); stop both
    and remove their files after."""
    with server_directory(prefix) as home, ExitStack() as stack:
        primary = Cluster(home, home / "primary", free_port(), {"wal_level": "replica"})
        primary.initdb()
        primary.start()
        stack.callback(primary.stop, "immediate")
        standby = Cluster(home, home / "standby", free_port(), {"hot_standby": "on"})
        run_as_server_user(
            [
                str(POSTGRES_BIN / "pg_basebackup"),
                "-d",
                primary.url,
                "-D",
                str(standby.data_dir),
                "-R",
                "-X",
                "stream",
                "--no-sync",
            ],
            home,
        )
        standby.start()
        stack.callback(standby.stop, "immediate")
        wait_until_accepting(standby.url)
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
        return url(self.monitor_port, "pg_auto_failover", "autoctl_node") + "?sslmode=disable"

    def database_url(self, database: str) -> str:
        """A URL over every node that connects to whichever is the primary now."""
        hosts = ",".join(f"{HOST}:{node.port}" for node in self.nodes)
        return f"postgresql://postgres@{hosts}/{database}?target_session_attrs=read-write&connect_timeout=2"

    def start(self, node_count: int = 2) -> None:
        self._keep(
            "monitor",
            ["create", "monitor", "--pgdata", str(self.home / "monitor"), "--pgport", str(self.monitor_port)],
        )
        wait_until_accepting(self.monitor_url)
        with psycopg.connect(url(self.monitor_port, "pg_auto_failover"), autocommit=True) as conn:
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
        keeper = spawn_as_server_user(command, self.home, self.home / f"{name}.log")
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
def formation(prefix: str = "ledger-formation-") -> Iterator[Formation]:
    """Yield a running pg_auto_failover formation (monitor, primary, synchronous standby); stop it
    and remove its files after."""
    with server_directory(prefix) as home:
        running = Formation(home)
        try:
            running.start()
            yield running
        finally:
            running.stop()
