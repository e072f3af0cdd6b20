"""`ledger serve --workers 2`: two server processes, each with its own pool and its own listening
socket on one port; Ctrl-C stops them all and closes every database connection."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import psycopg

from ledger import db
from tests.support import delivery_body
from tests.support.servers import START_TIMEOUT_S, STOP_TIMEOUT_S, free_port, stop_with_ctrl_c

SECRET = "workers-secret"
SELECT_BACKENDS = "SELECT count(*) FROM pg_stat_activity WHERE datname = %(name)s AND pid <> pg_backend_pid()"


def backends(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(SELECT_BACKENDS, {"name": db.database_name(database_url)}).fetchone()
    assert row is not None
    return row[0]


def listening_sockets(process: psutil.Process, port: int) -> list[str]:
    """Return the sockets (as "socket:[inode]") on which process listens on port."""
    return [
        os.readlink(f"/proc/{process.pid}/fd/{connection.fd}")
        for connection in process.net_connections("tcp")
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port
    ]


def established(process: psutil.Process, port: int) -> int:
    """Return how many client connections to port process holds."""
    return sum(
        1
        for connection in process.net_connections("tcp")
        if connection.status == psutil.CONN_ESTABLISHED and connection.laddr.port == port
    )


def wait_for(condition, message: str, timeout_s: float) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, message()
        time.sleep(0.1)


def test_two_workers_serve_with_a_pool_each_and_stop_cleanly(tmp_path: Path, server_url: str) -> None:
    database_url = db.create_database(server_url, "ledger_workers")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")} | {
        "LEDGER_DATABASE_URL": database_url,
        "LEDGER_WEBHOOK_SECRETS": SECRET,
        "LEDGER_DATA_DIR": str(tmp_path / ".ledger"),
    }
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ledger", "serve", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def serving() -> bool:
            assert process.poll() is None, f"ledger serve exited early:\n{log_path.read_text()}"
            try:
                return httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(serving, lambda: f"not serving:\n{log_path.read_text()}", START_TIMEOUT_S)

        def worker_processes() -> list[psutil.Process]:
            children = psutil.Process(process.pid).children(recursive=True)
            return [child for child in children if "resource_tracker" not in " ".join(child.cmdline())]

        wait_for(
            lambda: len(worker_processes()) == 2,
            lambda: f"workers: {[w.cmdline() for w in worker_processes()]}",
            START_TIMEOUT_S,
        )
        workers = worker_processes()
        wait_for(
            lambda: all(listening_sockets(worker, port) for worker in workers),
            lambda: f"listening: {[listening_sockets(w, port) for w in workers]}\n{log_path.read_text()}",
            START_TIMEOUT_S,
        )
        # A listening socket of its own for each worker (SO_REUSEPORT), not one shared socket.
        (first,), (second,) = (listening_sockets(worker, port) for worker in workers)
        assert first != second, "the workers accept from one shared socket"
        # So a burst of keep-alive connections spreads over both (by a hash of each one's
        # addresses: fewer than 4 of 32 on one worker has a chance of about 3 in a million).
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(32)]
        try:
            wait_for(
                lambda: sum(established(worker, port) for worker in workers) == 32,
                lambda: f"connections: {[established(w, port) for w in workers]}",
                START_TIMEOUT_S,
            )
            spread = [established(worker, port) for worker in workers]
            assert min(spread) >= 4, f"32 connections went {spread}"
        finally:
            for client in clients:
                client.close()
        # Each worker opens its own pool (2 connections at least) when it starts.
        wait_for(
            lambda: backends(database_url) >= 4,
            lambda: f"{backends(database_url)} connections: not a pool per worker\n{log_path.read_text()}",
            START_TIMEOUT_S,
        )

        # Fresh connections land on either worker: every one must answer from the database.
        for _ in range(20):
            body = delivery_body(1, 1, "1.00", secret=SECRET.encode())
            with httpx.Client(base_url=base_url) as client:
                answer = client.post("/webhook/payment", json=body)
            assert answer.status_code == 201, answer.text
        login = httpx.post(f"{base_url}/login", json={"email": "testuser@example.com", "password": "123456"})
        headers = {"Authorization": f"Bearer {login.json()['token']}"}
        accounts = httpx.get(f"{base_url}/user/accounts", headers=headers)
        assert accounts.json() == [{"id": 1, "balance": 20.00}]
    finally:
        exit_code = stop_with_ctrl_c(process, log_path)
    try:
        assert exit_code == 0, f"exit code {exit_code}:\n{log_path.read_text()}"
        assert not any(worker.is_running() for worker in workers), "a worker outlived the server"
        # Each worker closed its pool on the way out.
        wait_for(
            lambda: backends(database_url) == 0,
            lambda: f"{backends(database_url)} connections left open",
            STOP_TIMEOUT_S,
        )
    finally:
        db.drop_database(server_url, database_url)
