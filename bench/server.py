"""Processes the bench starts: `ledger serve` on a bench database, and the trivial server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil

START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_serving(process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited early:\n{log_path.read_text()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"not serving after {START_TIMEOUT_S}s:\n{log_path.read_text()}")
        time.sleep(0.1)


def _wait_until_every_worker_listens(
    process: subprocess.Popen[bytes], port: int, workers: int, log_path: Path
) -> None:
    """Wait until each worker listens on a socket of its own: connections opened before a
    worker listens all go to the others, and keep-alive connections stay where they landed."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        listening = 0
        for child in psutil.Process(process.pid).children():
            try:
                connections = child.net_connections("tcp")
            except psutil.NoSuchProcess:
                continue
            listening += any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in connections)
        if listening >= workers:
            return
        if time.monotonic() > deadline:
            log = log_path.read_text()
            raise RuntimeError(f"{listening} of {workers} workers listen after {START_TIMEOUT_S}s:\n{log}")
        time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes], log_path: Path) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise RuntimeError(f"the server did not stop on SIGINT:\n{log_path.read_text()}") from None


@contextmanager
def ledger_serve(
    database_url: str,
    port: int,
    workers: int,
    jwt_secret: bytes,
    webhook_secret: bytes,
    log_path: Path,
    **more_env: str,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `ledger serve` on database_url (plus those LEDGER_ variables) until the block ends
    (then SIGINT, as Ctrl-C)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")} | {
        "LEDGER_DATABASE_URL": database_url,
        "LEDGER_JWT_SECRET": jwt_secret.decode(),
        "LEDGER_WEBHOOK_SECRETS": webhook_secret.decode(),
        "LEDGER_DATA_DIR": str(log_path.parent / "ledger-data"),
        **more_env,
    }
    command = [sys.executable, "-m", "ledger", "serve", "--port", str(port)]
    if workers != 1:
        command += ["--workers", str(workers)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_until_serving(process, f"http://127.0.0.1:{port}/healthz", log_path)
        if workers > 1:
            _wait_until_every_worker_listens(process, port, workers, log_path)
        yield process
    finally:
        if process.poll() is None:
            _stop(process, log_path)


@contextmanager
def trivial_server(port: int, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run bench.trivial on port until the block ends."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.trivial", str(port)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        _wait_until_serving(process, f"http://127.0.0.1:{port}/", log_path)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=STOP_TIMEOUT_S)


def resident_mb(process: subprocess.Popen[bytes]) -> dict[str, float]:
    """Return the resident memory (MB) of the server process and of each of its children."""
    root = psutil.Process(process.pid)
    sizes: dict[str, float] = {}
    for member in [root, *root.children(recursive=True)]:
        try:
            command = " ".join(member.cmdline())
            role = "main" if member.pid == root.pid else "worker"
            if "resource_tracker" in command:
                role = "resource_tracker"
            sizes[f"{role}:{member.pid}"] = round(member.memory_info().rss / 2**20, 1)
        except psutil.NoSuchProcess:
            continue
    return sizes


def cpu_s(process: subprocess.Popen[bytes]) -> float:
    """Return the CPU seconds (user + system) used so far by the server and its workers."""
    root = psutil.Process(process.pid)
    total = 0.0
    for member in [root, *root.children(recursive=True)]:
        try:
            times = member.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total
