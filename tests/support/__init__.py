"""Helpers shared by the tests: signed deliveries, fresh users, sums straight from the log, the
command line on a database. The real server's processes are in tests.support.servers; the
container files' tools in tests.support.containers. Fixtures stay in the conftest files.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import AsyncConnection
from standardwebhooks import Webhook

from ledger import commands, deliveries, signatures
from ledger.commands import NewUser, UserChanges
from ledger.config import CHEAPEST_ARGON2, PUBLIC_EXAMPLE_WEBHOOK_SECRET
from ledger.events import PaymentReceived
from ledger.http import parse
from ledger.passwords import Passwords
from ledger.projections.users import UserView
from ledger.signatures import Webhooks

TEST_WEBHOOK_SECRET = b"test-webhook-secret"
# Standard Webhooks keys: the current one and one being rotated out (both verify).
STANDARD_WEBHOOK_KEY = b"test-standard-webhooks-key-current-0001"
ROTATED_STANDARD_WEBHOOK_KEY = b"test-standard-webhooks-key-rotated-0002"
PASSWORD = "correct horse"

SELECT_BALANCE = "SELECT balance FROM accounts WHERE id = %(account_id)s"
SELECT_SUM_OF_PAYMENT_EVENTS = """
    SELECT COALESCE(sum((data->>'amount')::numeric), 0), count(*)
    FROM events
    WHERE type = 'PaymentReceived' AND (data->>'account_id')::bigint = %(account_id)s
"""
SELECT_EVENT_COUNT = "SELECT count(*) FROM events"

# The webhook contract's example: signed with the public example secret.
CONTRACT_EXAMPLE = {
    "transaction_id": "5eae174f-7cd0-472c-bd36-35660f00132b",
    "user_id": 1,
    "account_id": 1,
    "amount": 100,
    "signature": "7b47e41efe564a062029da3367bde8844bea0fb049f894687cee5d57f2858bc8",
}


@dataclass(frozen=True)
class Person:
    """A user of the tests and a token of theirs."""

    user: UserView
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def webhooks_for_tests() -> Webhooks:
    """The webhook secrets of the tests' service: both schemes, a rotated-out key beside each current one."""
    return Webhooks(
        secrets=(TEST_WEBHOOK_SECRET, PUBLIC_EXAMPLE_WEBHOOK_SECRET.encode()),
        standard_keys=(STANDARD_WEBHOOK_KEY, ROTATED_STANDARD_WEBHOOK_KEY),
    )


def new_transaction_id() -> str:
    return f"tx-{uuid.uuid4()}"


def new_email() -> str:
    return f"user-{uuid.uuid4().hex[:16]}@example.com"


def new_address() -> str:
    """A client address no other test uses."""
    number = uuid.uuid4().int
    return f"10.{number % 256}.{number // 256 % 256}.{number // 65536 % 254 + 1}"


def as_login(url: str, user: str) -> str:
    """Return url with another user and no password (the test server trusts local logins)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


def new_account_id() -> int:
    """An account id no other test uses (random in a range the seeds never reach)."""
    return 1_000_000 + uuid.uuid4().int % (2**62)


def delivery_body(
    user_id: int,
    account_id: int,
    amount: Any,
    transaction_id: str | None = None,
    secret: bytes = TEST_WEBHOOK_SECRET,
) -> dict[str, Any]:
    """Return a webhook body signed as the provider signs it (amount as written in the JSON)."""
    transaction_id = transaction_id or new_transaction_id()
    amount_text = amount if isinstance(amount, str) else json.dumps(amount)
    signed = signatures.payload(str(account_id), amount_text, transaction_id, str(user_id))
    return {
        "transaction_id": transaction_id,
        "user_id": user_id,
        "account_id": account_id,
        "amount": amount,
        "signature": signatures.sign(signed, secret),
    }


def delivery_bytes(body: dict[str, Any], amount_literal: str | None = None) -> bytes:
    """Return body as JSON bytes; amount_literal writes the amount as that exact JSON number."""
    if amount_literal is None:
        return json.dumps(body).encode()
    return json.dumps({**body, "amount": "@AMOUNT@"}).replace('"@AMOUNT@"', amount_literal).encode()


async def create_user(conn: AsyncConnection, passwords: Passwords, *, is_admin: bool = False) -> UserView:
    return await commands.register(conn, passwords, NewUser(new_email(), "Test Person", PASSWORD, is_admin))


async def balance_of(conn: AsyncConnection, account_id: int) -> Decimal | None:
    cursor = await conn.execute(SELECT_BALANCE, {"account_id": account_id})
    row = await cursor.fetchone()
    return row[0] if row else None


async def sum_of_payment_events(conn: AsyncConnection, account_id: int) -> tuple[Decimal, int]:
    cursor = await conn.execute(SELECT_SUM_OF_PAYMENT_EVENTS, {"account_id": account_id})
    row = await cursor.fetchone()
    assert row is not None
    return row[0], row[1]


async def event_count(conn: AsyncConnection) -> int:
    cursor = await conn.execute(SELECT_EVENT_COUNT)
    row = await cursor.fetchone()
    assert row is not None
    return row[0]


def delivery(
    user_id: int, account_id: int, amount: Any, transaction_id: str | None = None
) -> PaymentReceived:
    """Return a parsed, correctly signed delivery, as the webhook hands it to the command."""
    body = delivery_body(user_id, account_id, amount, transaction_id)
    return accepted_delivery(json.dumps(body).encode())


def accepted_delivery(
    raw: bytes, webhooks: Webhooks | None = None, headers: dict[str, str] | None = None
) -> PaymentReceived:
    """Return the payment a raw delivery asks for, read and checked as the webhook reads and
    checks it (headers: lower-case names, for Standard Webhooks)."""
    received = parse.payment_delivery(raw, (headers or {}).get)
    return deliveries.accepted(received, webhooks or webhooks_for_tests())


def standard_delivery(
    body: dict[str, Any],
    *,
    key: bytes = STANDARD_WEBHOOK_KEY,
    webhook_id: str | None = None,
    at: datetime | None = None,
) -> tuple[bytes, dict[str, str]]:
    """Return a raw body and the three headers that sign it, as a provider sends them."""
    raw = json.dumps(body)
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    at = at or datetime.now(UTC)
    headers = {
        "Content-Type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(key).sign(webhook_id, at, raw),
    }
    return raw.encode(), headers


# No event type of the service writes a JSON number with a fraction (amounts are strings), but
# the log's owner can: the feed, the export and its replay must still keep it exact.
INSERT_EVENT_WITH_A_FRACTION = """
    INSERT INTO events (stream, type, data)
    VALUES ('account-888', 'AccountOpened', '{"account_id": 888, "user_id": 1, "rate": 1.10}'::jsonb)
"""


def ledger_cli(database_url: str, *args: str, **env_vars: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m ledger *args` on that database (plus those environment variables)."""
    env = {**os.environ, "LEDGER_DATABASE_URL": database_url, "LEDGER_JWT_SECRET": "cli-test", **env_vars}
    return subprocess.run(
        [sys.executable, "-m", "ledger", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def fill_small_ledger(database_url: str) -> None:
    """Give the ledger users, updates, a deletion and payments, through the real commands."""

    async def run() -> None:
        passwords = Passwords(CHEAPEST_ARGON2)
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            alice = await commands.register(conn, passwords, NewUser("alice@example.com", "Alice", PASSWORD))
            bob = await commands.register(conn, passwords, NewUser("bob@example.com", "Bob", PASSWORD))
            await commands.update_user(
                conn, passwords, alice.id, UserChanges(full_name="Alice B", password="new-pass")
            )
            for i, (user, account_id) in enumerate(
                [(alice, 10), (alice, 11), (bob, 12), (alice, 10), (1, 1)]
            ):
                user_id = user if isinstance(user, int) else user.id
                await commands.receive_payment(conn, delivery(user_id, account_id, f"{i + 1}.25"))
            await commands.delete_user(conn, 2, bob.id)

    asyncio.run(run())
