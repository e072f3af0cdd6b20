"""Secrets that must never reach a log line, and a handler that keeps every log line of a session.

tests/conftest.py installs SessionLog on the root logger for the whole run and, at the end,
scans its lines and the real servers' captured output (the *.log files under pytest's base
temp dir) with secrets_in; any finding fails the run.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from ledger.config import PUBLIC_EXAMPLE_WEBHOOK_SECRET
from ledger.logs import JsonFormatter

# Any JWT (header and payload are base64url JSON objects: they start with "eyJ") and any
# argon2 hash, whoever issued or made it.
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
ARGON2_HASH = re.compile(r"\$argon2(?:id|i|d)\$")
# The seeded users' password is too short to look for bare (a request id may hold the digits);
# as a value in JSON or Python text it is unmistakable.
SEEDED_PASSWORD = re.compile(r"""["']123456["']""")


def secrets_in(text: str, literals: Iterable[str]) -> list[str]:
    """Return a description of each secret found in text: the patterns above, and literals."""
    found = [
        f"{name}: {match.group()[:40]}..." for name, pattern in PATTERNS for match in pattern.finditer(text)
    ]
    found += [f"literal secret: {literal[:4]}..." for literal in literals if literal in text]
    return found


PATTERNS = (("JWT", JWT), ("argon2 hash", ARGON2_HASH), ("seeded password", SEEDED_PASSWORD))

# Passwords and webhook secrets the tests use (each test module's own are added by conftest).
KNOWN_SECRETS = (
    "correct horse",  # tests.support.PASSWORD
    "wrong-password",
    "wrong-one",
    "a-new-password",
    "secret1",
    "new-pass",
    "another password",
    "test-webhook-secret",
    PUBLIC_EXAMPLE_WEBHOOK_SECRET,
    "faults-webhook-secret",
    "edges-webhook-secret",
    "e2e-secret",
    "faults-jwt-secret-",
    "test-jwt-secret-",
)


class SessionLog(logging.Handler):
    """Keeps every record as the service would write it: a JSON line, exception included."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []
        self.access_lines = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        self.access_lines += record.name == "ledger.access"
