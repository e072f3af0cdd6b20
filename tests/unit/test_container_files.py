"""Checks on the container files at the repo root: Dockerfile and docker-compose.yml.

Lints the Dockerfile with hadolint, validates the compose file with
`docker-compose config`, and asserts the properties deployment relies on
(non-root user, healthchecks, ledger waiting for a healthy db). No Docker
engine is needed. A missing tool fails the test rather than skipping it,
so CI cannot go green without actually running the checks.
"""

import json

from tests.support.containers import (
    COMPOSE_FILE,
    COMPOSE_SECRETS,
    DOCKERFILE,
    compose_env,
    output,
    run_tool,
)


def _compose_json() -> dict:
    proc = run_tool(
        "docker-compose",
        "-f",
        COMPOSE_FILE.name,
        "config",
        "--format",
        "json",
        env=compose_env(**COMPOSE_SECRETS),
    )
    assert proc.returncode == 0, output(proc)
    return json.loads(proc.stdout)


def test_hadolint_passes():
    proc = run_tool("hadolint", "--no-color", "--failure-threshold", "warning", DOCKERFILE.name)
    assert proc.returncode == 0, output(proc)


def test_compose_config_is_valid():
    proc = run_tool(
        "docker-compose", "-f", COMPOSE_FILE.name, "config", "--quiet", env=compose_env(**COMPOSE_SECRETS)
    )
    assert proc.returncode == 0, output(proc)


def test_dockerfile_runs_as_non_root_with_healthcheck():
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    users = [line.split(None, 1)[1] for line in lines if line.upper().startswith("USER ")]
    assert users, "Dockerfile has no USER line; the container would run as root"
    # The last USER is the one the final image runs as.
    user = users[-1].split(":")[0].strip()
    assert user not in ("root", "0"), f"Dockerfile runs as root: USER {users[-1]}"
    assert any(line.upper().startswith("HEALTHCHECK ") for line in lines), "Dockerfile has no HEALTHCHECK"


def test_compose_db_healthcheck_and_ledger_waits_for_it():
    services = _compose_json()["services"]
    assert "db" in services and "ledger" in services, sorted(services)

    healthcheck = services["db"].get("healthcheck") or {}
    assert healthcheck.get("test"), f"db service has no healthcheck: {healthcheck!r}"

    depends_on = services["ledger"].get("depends_on") or {}
    assert "db" in depends_on, f"ledger does not depend on db: {depends_on!r}"
    assert depends_on["db"].get("condition") == "service_healthy", (
        f"ledger must wait for a healthy db: {depends_on['db']!r}"
    )
