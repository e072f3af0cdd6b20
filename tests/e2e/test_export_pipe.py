"""`ledger export | head -1`: a reader that stops after one line is a normal end of the export,
not an error. The export ends quietly, with exit code 0 and no traceback."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import psycopg

from ledger import commands
from tests.support import delivery

# Enough JSON lines to outgrow a pipe's buffer (64 KiB on Linux) many times over, so that the
# export is still writing when the reader has gone.
PAYMENTS = 1000


async def fill(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for _ in range(PAYMENTS):
            await commands.receive_payment(conn, delivery(1, 1, "1.25"))


def test_export_into_a_pipe_closed_after_one_line_ends_quietly(own_database: str) -> None:
    asyncio.run(fill(own_database))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    env |= {"LEDGER_DATABASE_URL": own_database, "LEDGER_JWT_SECRET": "export-pipe-test"}
    with subprocess.Popen(
        [sys.executable, "-m", "ledger", "export"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        first = json.loads(process.stdout.readline())
        process.stdout.close()  # as `head -1` does once it has its line
        errors = process.stderr.read()
        exit_code = process.wait(timeout=60)
    assert first["type"] == "UserRegistered", first
    assert exit_code == 0, errors
    assert "Traceback" not in errors and "BrokenPipeError" not in errors, errors
