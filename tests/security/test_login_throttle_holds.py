"""The login throttle holds: attempts were counted after argon2 (8 concurrent wrong passwords
against a limit of 3 all got 401), and the key was lowered in Python while the user was looked
up in PostgreSQL (a locked email spelled with U+0130 logged in)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator

import pytest
from falcon.testing import ASGIConductor
from psycopg_pool import AsyncConnectionPool

from ledger import commands
from ledger.commands import NewUser
from ledger.config import LoginThrottle, Settings
from ledger.http.app import create_app
from ledger.passwords import Passwords
from tests.support import PASSWORD, new_address

EMAIL_MAX = 3


@pytest.fixture
async def throttled(settings: Settings, pool: AsyncConnectionPool) -> AsyncIterator[ASGIConductor]:
    throttle = LoginThrottle(failures_per_email_max=EMAIL_MAX, failures_per_address_max=1000, window_s=60)
    app = create_app(dataclasses.replace(settings, login_throttle=throttle), pool, pool_lifespan=False)
    async with ASGIConductor(app) as conductor:
        yield conductor


async def log_in(client: ASGIConductor, email: str, password: str) -> int:
    result = await client.simulate_post(
        "/login", json={"email": email, "password": password}, remote_addr=new_address()
    )
    return result.status_code


async def test_concurrent_wrong_passwords_never_exceed_the_limit(
    throttled: ASGIConductor, pool: AsyncConnectionPool, passwords: Passwords
) -> None:
    email = f"target-{uuid.uuid4().hex[:12]}@example.com"
    async with pool.connection() as conn:
        await commands.register(conn, passwords, NewUser(email, "Target", PASSWORD))
    statuses = await asyncio.gather(*(log_in(throttled, email, f"guess-{n}") for n in range(8)))
    assert sorted(statuses) == [401] * EMAIL_MAX + [429] * (8 - EMAIL_MAX), statuses


async def test_no_other_spelling_of_a_locked_email_logs_in(
    throttled: ASGIConductor, pool: AsyncConnectionPool, passwords: Passwords
) -> None:
    email = f"tim-{uuid.uuid4().hex[:12]}@example.com"
    async with pool.connection() as conn:
        await commands.register(conn, passwords, NewUser(email, "Tim", PASSWORD))
    for _ in range(EMAIL_MAX):
        assert await log_in(throttled, email, "wrong password") == 401
    spellings = [
        email,
        email.upper(),
        email.replace("i", "\u0130", 1),  # LATIN CAPITAL LETTER I WITH DOT ABOVE: PostgreSQL lowers it to i
        email.upper().replace("I", "\u0130", 1),
        f" {email} ",
        f"{email}\u00a0",
    ]
    for spelling in spellings:
        assert await log_in(throttled, spelling, PASSWORD) != 200, spelling
