"""The real server as the tests run it: `ledger serve` in a process of its own (on a free port,
stopped with Ctrl-C), and the live server that the e2e conftest runs in a thread."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from ledger.config import Settings

START_TIMEOUT_S = 90
STOP_TIMEOUT_S = 30
SEEDED_PASSWORD = "123456"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def ledger_serve(workdir: Path, port: int, **ledger_env: str) -> Iterator[str]:
    with ledger_process(workdir, port, **ledger_env) as (base_url, _):
        yield base_url


@contextmanager
def ledger_process(workdir: Path, port: int, **ledger_env: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run `ledger serve` until it answers /healthz; yield its URL and process; stop it with
    SIGINT (unless it stopped already) and check that it exits with 0."""
    # The environment of a newcomer: no database URL, no secrets set (unless given here).
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")} | ledger_env
    log_path = workdir / f"serve-{port}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ledger", "serve", "--port", str(port)],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert process.poll() is None, f"ledger serve exited early:\n{log_path.read_text()}"
            try:
                if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (
                f"not serving after {START_TIMEOUT_S}s:\n{log_path.read_text()}"
            )
            time.sleep(0.2)
        yield base_url, process
    finally:
        exit_code = stop_with_ctrl_c(process, log_path)
    assert exit_code == 0, f"exit code {exit_code}:\n{log_path.read_text()}"


def stop_with_ctrl_c(process: subprocess.Popen, log_path: Path) -> int:
    """Send SIGINT, as Ctrl-C does, and return the exit code; fail if it does not stop in time."""
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"ledger serve did not stop on SIGINT:\n{log_path.read_text()}") from None


@dataclass(frozen=True)
class LiveServer:
    """The e2e conftest's server (the live_server fixture): its URL and settings."""

    url: str
    settings: Settings

    def token(self, email: str, password: str = SEEDED_PASSWORD) -> str:
        login = httpx.post(f"{self.url}/login", json={"email": email, "password": password})
        assert login.status_code == 200, login.text
        return login.json()["access_token"]

    def new_user_id(self) -> int:
        email = f"user-{uuid.uuid4().hex[:16]}@example.com"
        body = {"email": email, "full_name": "Fuzz Target", "password": SEEDED_PASSWORD}
        created = httpx.post(f"{self.url}/register", json=body)
        assert created.status_code == 201, created.text
        return created.json()["id"]
