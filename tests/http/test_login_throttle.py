"""Login throttling per email and per client address: 429 with Retry-After, a correct password
included, until the window ends; counted in PostgreSQL, so every worker sees the same counts.
Public registrations are throttled per client address the same way."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest
from falcon.testing import ASGIConductor
from psycopg_pool import AsyncConnectionPool

from ledger.config import LoginThrottle, RequestThrottle, Settings
from ledger.http.app import create_app
from tests.support import PASSWORD, Person, new_address, new_email

EMAIL_MAX, ADDRESS_MAX, WINDOW_S = 3, 5, 60
POLL_LIMIT_S = 15


@pytest.fixture
async def throttled(settings: Settings, pool: AsyncConnectionPool) -> AsyncIterator[ASGIConductor]:
    """A client of an app with small limits (set through Settings, as in production)."""
    throttle = LoginThrottle(
        failures_per_email_max=EMAIL_MAX, failures_per_address_max=ADDRESS_MAX, window_s=WINDOW_S
    )
    app = create_app(dataclasses.replace(settings, login_throttle=throttle), pool, pool_lifespan=False)
    async with ASGIConductor(app) as conductor:
        yield conductor


async def log_in(client: ASGIConductor, email: str, password: str, address: str):  # noqa: ANN201
    return await client.simulate_post(
        "/login", json={"email": email, "password": password}, remote_addr=address
    )


def assert_throttled(result, window_s: int = WINDOW_S) -> None:  # noqa: ANN001
    assert result.status_code == 429, result.text
    assert result.json["error"] == "too_many_attempts"
    assert result.json["message"]
    assert 1 <= int(result.headers["Retry-After"]) <= window_s


async def test_an_email_is_locked_after_its_failures_and_a_correct_password_does_not_pass(
    throttled: ASGIConductor, person: Person
) -> None:
    for _ in range(EMAIL_MAX):  # each from another address: only the email's count grows
        assert (
            await log_in(throttled, person.user.email, "wrong-password", new_address())
        ).status_code == 401
    assert_throttled(await log_in(throttled, person.user.email, PASSWORD, new_address()))
    assert_throttled(await log_in(throttled, person.user.email.upper(), PASSWORD, new_address()))
    assert_throttled(await log_in(throttled, person.user.email, "wrong-password", new_address()))


async def test_an_address_is_locked_after_its_failures_whatever_the_email(
    throttled: ASGIConductor, person: Person
) -> None:
    address = new_address()
    for _ in range(ADDRESS_MAX):  # another email each time: only the address's count grows
        assert (await log_in(throttled, new_email(), "wrong-password", address)).status_code == 401
    assert_throttled(await log_in(throttled, person.user.email, PASSWORD, address))
    # The same user from another address is not locked: its email has no failures.
    assert (await log_in(throttled, person.user.email, PASSWORD, new_address())).status_code == 200


async def test_an_ipv6_address_is_locked_like_any_other(throttled: ASGIConductor, person: Person) -> None:
    address = f"2001:db8::{uuid.uuid4().int % 65535:x}"  # colons of its own, inside the throttle's key
    for _ in range(ADDRESS_MAX):
        assert (await log_in(throttled, new_email(), "wrong-password", address)).status_code == 401
    assert_throttled(await log_in(throttled, person.user.email, PASSWORD, address))


async def test_retry_after_is_the_longest_wait_of_the_locks_a_login_meets(
    throttled: ASGIConductor, person: Person, database_url: str
) -> None:
    address = new_address()
    for _ in range(EMAIL_MAX):
        await log_in(throttled, person.user.email, "wrong-password", new_address())
    for _ in range(ADDRESS_MAX):
        await log_in(throttled, new_email(), "wrong-password", address)
    # The address's lock ends well before the email's: a login meeting both waits for the email's.
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as owner:
        await owner.execute(
            "UPDATE throttle_counts SET window_ends_at = now() + interval '10 seconds' WHERE key = %s",
            ("address:" + address,),
        )
    result = await log_in(throttled, person.user.email, PASSWORD, address)
    assert_throttled(result)
    assert int(result.headers["Retry-After"]) > 10  # the email's, not the address's


async def test_unknown_emails_are_throttled_like_known_ones(throttled: ASGIConductor) -> None:
    email = new_email()
    for _ in range(EMAIL_MAX):
        assert (await log_in(throttled, email, "wrong-password", new_address())).status_code == 401
    assert_throttled(await log_in(throttled, email, "wrong-password", new_address()))


async def test_a_successful_login_forgets_the_emails_failures(
    throttled: ASGIConductor, person: Person
) -> None:
    for _ in range(3):
        for _ in range(EMAIL_MAX - 1):
            result = await log_in(throttled, person.user.email, "wrong-password", new_address())
            assert result.status_code == 401
        assert (await log_in(throttled, person.user.email, PASSWORD, new_address())).status_code == 200


async def test_the_lock_ends_with_the_window(
    settings: Settings, pool: AsyncConnectionPool, person: Person
) -> None:
    throttle = LoginThrottle(failures_per_email_max=1, failures_per_address_max=ADDRESS_MAX, window_s=1)
    app = create_app(dataclasses.replace(settings, login_throttle=throttle), pool, pool_lifespan=False)
    async with ASGIConductor(app) as client:
        assert (await log_in(client, person.user.email, "wrong-password", new_address())).status_code == 401
        assert_throttled(await log_in(client, person.user.email, PASSWORD, new_address()), window_s=1)
        # Refused logins are not counted, so polling does not extend the lock.
        deadline = time.monotonic() + POLL_LIMIT_S
        while (result := await log_in(client, person.user.email, PASSWORD, new_address())).status_code == 429:
            assert time.monotonic() < deadline, f"still locked after {POLL_LIMIT_S}s"
            await asyncio.sleep(0.05)
        assert result.status_code == 200, result.text


async def test_one_user_logging_in_many_times_at_once_always_gets_in(
    client: ASGIConductor, person: Person
) -> None:
    # The suite's limits are far above these logins. The count of an attempt locks the email's
    # row, then the address's; the forgetting after a success once took them in the other
    # order, and two logins of one user deadlocked (PostgreSQL broke it after a second: a 503).
    address = new_address()

    async def logins() -> list[int]:
        return [(await log_in(client, person.user.email, PASSWORD, address)).status_code for _ in range(15)]

    statuses = [status for batch in await asyncio.gather(*(logins() for _ in range(8))) for status in batch]
    assert statuses == [200] * len(statuses)


async def test_registrations_are_throttled_per_client_address(
    settings: Settings, pool: AsyncConnectionPool
) -> None:
    throttled = dataclasses.replace(
        settings, registration_throttle=RequestThrottle(requests_per_address_max=3, window_s=60)
    )
    app = create_app(throttled, pool, pool_lifespan=False)
    address = f"10.99.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"
    async with ASGIConductor(app) as client:
        statuses = []
        for _ in range(5):
            body = {"email": new_email(), "full_name": "Many", "password": PASSWORD}
            result = await client.simulate_post("/register", json=body, remote_addr=address)
            statuses.append(result.status_code)
        assert statuses == [201, 201, 201, 429, 429]
        assert int(result.headers["Retry-After"]) >= 1
        assert result.json["error"] == "too_many_attempts"
        assert "registrations" in result.json["message"]  # not the failed logins' message
        other = await client.simulate_post(
            "/register",
            json={"email": new_email(), "full_name": "Else", "password": PASSWORD},
            remote_addr="10.98.0.1",
        )
        assert other.status_code == 201


async def test_successful_logins_never_lock_their_address(throttled: ASGIConductor, person: Person) -> None:
    address = new_address()
    for _ in range(ADDRESS_MAX * 2):
        assert (await log_in(throttled, person.user.email, PASSWORD, address)).status_code == 200
