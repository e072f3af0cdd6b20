"""The real server, started as the README says: `ledger serve`, no database URL, so it starts
its own PostgreSQL in ./.ledger/. A client logs in as the seeded admin and sends the contract's
signed webhook; Ctrl-C stops the service and that PostgreSQL; a second start keeps the data."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import psutil
import psycopg

from ledger import db
from tests.support import CONTRACT_EXAMPLE
from tests.support.servers import STOP_TIMEOUT_S, free_port, ledger_serve


def postgres_processes(data_dir: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        if process.info["name"] == "postgres" and str(data_dir) in " ".join(process.info["cmdline"] or []):
            found.append(process)
    return found


def test_a_newcomer_starts_the_service_and_logs_in_as_the_seeded_admin(tmp_path: Path) -> None:
    data_dir = tmp_path / ".ledger" / "postgres"
    port = free_port()
    with ledger_serve(tmp_path, port) as base_url:
        login = httpx.post(f"{base_url}/login", json={"email": "testadmin@example.com", "password": "123456"})
        assert login.status_code == 200, login.text
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        about = httpx.get(f"{base_url}/user/about", headers=headers)
        assert about.json() == {
            "id": 2,
            "email": "testadmin@example.com",
            "full_name": "Test Admin",
            "is_admin": True,
            "is_auditor": False,
        }
        credited = httpx.post(f"{base_url}/webhook/payment", json=CONTRACT_EXAMPLE)
        assert credited.status_code == 201, credited.text
        assert postgres_processes(data_dir), "the embedded PostgreSQL should run in ./.ledger/"
    first_log = (tmp_path / f"serve-{port}.log").read_text()
    assert "public example secret" in first_log, "no warning about the public webhook secret"
    assert (tmp_path / ".ledger" / "jwt_secret").is_file()

    deadline = time.monotonic() + STOP_TIMEOUT_S
    while postgres_processes(data_dir):
        assert time.monotonic() < deadline, "the embedded PostgreSQL was left running"
        time.sleep(0.2)

    # A second start reuses the data: the payment is still there, and is not credited again;
    # the JWT secret was kept, so a token of the first run still works.
    with ledger_serve(tmp_path, free_port()) as base_url:
        again = httpx.post(f"{base_url}/webhook/payment", json=CONTRACT_EXAMPLE)
        assert again.status_code == 200, again.text
        assert again.json()["balance"] == 100
        assert httpx.get(f"{base_url}/user/about", headers=headers).status_code == 200


def test_with_a_database_url_it_uses_that_database_and_starts_nothing(
    tmp_path: Path, server_url: str
) -> None:
    database_url = db.create_database(server_url, "ledger_e2e")
    try:
        with ledger_serve(
            tmp_path, free_port(), LEDGER_DATABASE_URL=database_url, LEDGER_WEBHOOK_SECRETS="e2e-secret"
        ) as base_url:
            login = httpx.post(
                f"{base_url}/login", json={"email": "testuser@example.com", "password": "123456"}
            )
            assert login.status_code == 200, login.text
            # The example is signed with the public secret, which this service does not hold.
            refused = httpx.post(f"{base_url}/webhook/payment", json=CONTRACT_EXAMPLE)
            assert refused.status_code == 400
            assert refused.json()["error"] == "invalid_signature"
        assert not (tmp_path / ".ledger" / "postgres").exists(), "an embedded PostgreSQL was started"
        with psycopg.connect(database_url) as conn:  # migrated and seeded there
            assert conn.execute("SELECT count(*) FROM users").fetchone() == (2,)
    finally:
        db.drop_database(server_url, database_url)
