"""The scan for secrets in the logs finds what it must, and a leak fails the whole run."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import jwt
from argon2 import PasswordHasher

from ledger.config import REPO_ROOT
from tests.log_scan import KNOWN_SECRETS, secrets_in

LEAK_SWITCH = "LEDGER_TEST_LEAK_A_TOKEN"
CLEAN_LINE = (
    '{"time": "2026-01-01T00:00:00.000Z", "level": "info", "logger": "ledger.access",'
    ' "message": "POST /login 401", "request_id": "1234567890abcdef123456", "method": "POST",'
    ' "route": "/login", "status": 401, "duration_ms": 3.5}'
)


def test_a_clean_access_line_has_no_finding() -> None:
    assert secrets_in(CLEAN_LINE, KNOWN_SECRETS) == []


def test_tokens_hashes_passwords_and_secrets_are_found() -> None:
    token = jwt.encode({"sub": "1", "ver": 1}, "k" * 32, algorithm="HS256")
    password_hash = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("x")
    for leak in (token, password_hash, '{"password": "123456"}', "test-webhook-secret", "correct horse"):
        assert secrets_in(CLEAN_LINE + " " + leak, KNOWN_SECRETS), leak


def test_a_secret_in_a_log_line_fails_the_run() -> None:
    """Run this module again in a pytest of its own, with the leaking test below switched on."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"{__file__}::test_leak",
            "-W",
            "ignore",
        ],
        cwd=REPO_ROOT,
        env={**os.environ, LEAK_SWITCH: "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "1 passed" in result.stdout, result.stdout + result.stderr
    assert result.returncode == 1, result.stdout
    assert "secrets in the logs" in result.stdout


if os.environ.get(LEAK_SWITCH):  # defined only in the run above, which must fail

    def test_leak() -> None:
        token = jwt.encode({"sub": "1"}, "k" * 32, algorithm="HS256")
        logging.getLogger("ledger.leaky").warning("refused token %s", token)
