"""Production refuses the public defaults: a default `docker compose up` handed out admin
(a placeholder JWT secret, the seeded admin with password 123456 in every deployment)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from ledger import commands, db
from ledger.commands import UserChanges
from ledger.config import CHEAPEST_ARGON2, PUBLIC_EXAMPLE_WEBHOOK_SECRET, REPO_ROOT
from ledger.passwords import Passwords
from tests.support import as_login
from tests.support.containers import COMPOSE_FILE, COMPOSE_SECRETS, DOCKERFILE, compose_env, output, run_tool
from tests.support.servers import free_port, ledger_serve

STRONG_JWT_SECRET = "9f2c" * 16
STRONG_WEBHOOK_SECRET = "a-provider-secret-nobody-else-knows"
UNREACHABLE_DATABASE = "postgresql://ledger@127.0.0.1:1/ledger"
EXIT_TIMEOUT_S = 60


def production_env(**overrides: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    env |= {
        "LEDGER_ENV": "production",
        "LEDGER_DATABASE_URL": UNREACHABLE_DATABASE,
        "LEDGER_JWT_SECRET": STRONG_JWT_SECRET,
        "LEDGER_WEBHOOK_SECRETS": STRONG_WEBHOOK_SECRET,
    }
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def ledger(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ledger", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=EXIT_TIMEOUT_S,
        check=False,
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LEDGER_WEBHOOK_SECRETS", None),
        ("LEDGER_WEBHOOK_SECRETS", PUBLIC_EXAMPLE_WEBHOOK_SECRET),
        ("LEDGER_WEBHOOK_SECRETS", f"{STRONG_WEBHOOK_SECRET},{PUBLIC_EXAMPLE_WEBHOOK_SECRET}"),
        ("LEDGER_JWT_SECRET", None),
        ("LEDGER_JWT_SECRET", "too-short-for-hs256"),
        ("LEDGER_JWT_SECRET", "change-me-in-production"),
        ("LEDGER_JWT_SECRET", "change-me-in-production-change-me-in-production"),
    ],
)
def test_production_refuses_to_serve_with_a_public_or_weak_secret(
    tmp_path: Path, variable: str, value: str | None
) -> None:
    result = ledger(production_env(**{variable: value}), "serve", "--port", str(free_port()), cwd=tmp_path)
    assert result.returncode != 0, result.stderr
    assert variable in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / ".ledger").exists(), "nothing is started before the settings are checked"


def test_development_still_starts_with_the_public_defaults() -> None:
    env = production_env(LEDGER_ENV=None, LEDGER_JWT_SECRET=None, LEDGER_WEBHOOK_SECRETS=None)
    result = ledger(env, "serve", "--help")
    assert result.returncode == 0, result.stderr


@pytest.fixture
def database(server_url: str) -> Iterator[str]:
    url = db.create_database(server_url, "ledger_production")
    yield url
    db.drop_database(server_url, url)


def serve_env(owner_url: str, runtime_url: str) -> dict[str, str]:
    return {
        "LEDGER_ENV": "production",
        "LEDGER_OWNER_DATABASE_URL": owner_url,
        "LEDGER_DATABASE_URL": runtime_url,
        "LEDGER_JWT_SECRET": STRONG_JWT_SECRET,
        "LEDGER_WEBHOOK_SECRETS": STRONG_WEBHOOK_SECRET,
    }


def test_production_never_seeds_the_test_users(tmp_path: Path, database: str, runtime_login: str) -> None:
    migrated = ledger(production_env(LEDGER_DATABASE_URL=database), "migrate")
    assert migrated.returncode == 0, migrated.stderr
    runtime_url = as_login(database, runtime_login)
    with ledger_serve(tmp_path, free_port(), **serve_env(database, runtime_url)) as base_url:
        login = httpx.post(f"{base_url}/login", json={"email": "testadmin@example.com", "password": "123456"})
        assert login.status_code == 401
    # Not even later, in development: the seed migration counts as done.
    db.migrate(database, REPO_ROOT / "sql")
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (0,)


def test_production_refuses_a_database_where_a_seeded_user_keeps_the_seed_password(
    tmp_path: Path, database: str, runtime_login: str
) -> None:
    db.migrate(database, REPO_ROOT / "sql")  # migrated in development: seeded
    env = production_env() | serve_env(database, as_login(database, runtime_login))
    refused = ledger(env, "serve", "--port", str(free_port()), cwd=tmp_path)
    assert refused.returncode != 0
    assert "testadmin@example.com" in refused.stderr and "testuser@example.com" in refused.stderr
    assert "Traceback" not in refused.stderr

    async def change_the_seed_passwords() -> None:
        passwords = Passwords(CHEAPEST_ARGON2)
        async with await psycopg.AsyncConnection.connect(database, autocommit=True) as conn:
            await commands.update_user(conn, passwords, 2, UserChanges(password="a long new admin password"))
            await commands.delete_user(conn, 2, 1)

    asyncio.run(change_the_seed_passwords())
    with ledger_serve(tmp_path, free_port(), **serve_env(database, as_login(database, runtime_login))) as url:
        assert httpx.get(f"{url}/readyz").status_code == 200


def test_production_refuses_to_serve_as_a_superuser(tmp_path: Path, database: str) -> None:
    env = production_env(LEDGER_DATABASE_URL=database)
    refused = ledger(env, "serve", "--port", str(free_port()), cwd=tmp_path)
    assert refused.returncode != 0
    assert "LEDGER_DATABASE_URL" in refused.stderr and "superuser" in refused.stderr, refused.stderr


def compose_config(**secrets: str) -> subprocess.CompletedProcess[str]:
    return run_tool(
        "docker-compose", "-f", COMPOSE_FILE.name, "config", "--format", "json", env=compose_env(**secrets)
    )


def test_compose_requires_its_secrets() -> None:
    for missing in COMPOSE_SECRETS:
        result = compose_config(**{k: v for k, v in COMPOSE_SECRETS.items() if k != missing})
        assert result.returncode != 0, f"compose started without {missing}"
        assert missing in result.stderr, output(result)


def test_compose_binds_to_localhost_and_waits_longer_than_the_shutdown_timeout() -> None:
    result = compose_config(**COMPOSE_SECRETS)
    assert result.returncode == 0, output(result)
    services = json.loads(result.stdout)["services"]
    ledger_service = services["ledger"]
    assert [port["host_ip"] for port in ledger_service["ports"]] == ["127.0.0.1"]
    assert "ports" not in services["db"]
    environment = ledger_service["environment"]
    shutdown_timeout_s = int(environment.get("LEDGER_SHUTDOWN_TIMEOUT_S", "30"))
    grace = ledger_service["stop_grace_period"]  # "40s"
    assert grace.endswith("s") and int(grace[:-1]) > shutdown_timeout_s, grace
    assert "change-me" not in json.dumps(services)
    # The service serves as the runtime login; only the migration holds the owner's password.
    assert COMPOSE_SECRETS["LEDGER_DB_OWNER_PASSWORD"] not in json.dumps(ledger_service)


def test_the_docker_image_runs_in_production_mode() -> None:
    assert "LEDGER_ENV=production" in DOCKERFILE.read_text()
