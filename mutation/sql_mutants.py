"""The hand-written SQL mutants: each one small textual change in one function of
sql/definitions/, and the tests that should notice it.

`original` must occur exactly once in its file (the command refuses to run a mutant whose text has
moved on, instead of reporting it as a survivor). The tests are pytest node ids or files; they run
against a fresh database built from the mutated definitions.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SqlMutant:
    name: str
    file: str  # under sql/definitions/
    original: str
    replacement: str
    tests: tuple[str, ...]


EVENT_LOG = "10-event-log.sql"
EVENT_DATA = "20-event-data.sql"
USERS = "30-users.sql"
PAYMENTS = "40-payments.sql"
MONEY = "50-money-movement.sql"

SQL_MUTANTS: tuple[SqlMutant, ...] = ()
