"""Password hashing cannot starve payments: public /register held a pool connection while argon2
ran, so a burst of registrations left payments waiting seconds for a connection, then 503."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator

import pytest
from falcon.testing import ASGIConductor
from psycopg_pool import AsyncConnectionPool

from ledger import db
from ledger.config import Argon2Cost, RequestThrottle, Settings
from ledger.http.app import create_app
from ledger.passwords import HashingBusyError, Passwords
from tests.support import PASSWORD, delivery_body, new_account_id, new_email

BURST = 40
PAYMENTS = 30
PAYMENT_ANSWER_MAX_S = 1.0


@pytest.fixture
async def small_pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    """As few connections as a busy worker has free: whatever holds one while hashing shows."""
    pool = db.create_pool(db.serving_conninfo(database_url, statement_timeout_s=5), 2, 4, timeout_s=5)
    await pool.open(wait=True)
    yield pool
    await pool.close()


async def test_a_burst_of_registrations_and_logins_leaves_payments_answered_at_once(
    settings: Settings, small_pool: AsyncConnectionPool
) -> None:
    """With the production argon2 cost, not the tests' cheapest."""
    production = dataclasses.replace(
        settings,
        argon2=Argon2Cost(),
        registration_throttle=RequestThrottle(requests_per_address_max=10**6, window_s=60),
    )
    app = create_app(production, small_pool, pool_lifespan=False)
    async with ASGIConductor(app) as client:
        email = new_email()
        registered = await client.simulate_post(
            "/register", json={"email": email, "full_name": "Burst", "password": PASSWORD}
        )
        assert registered.status_code == 201, registered.text
        user_id = registered.json["id"]

        async def register() -> int:
            body = {"email": new_email(), "full_name": "Burst", "password": PASSWORD}
            return (await client.simulate_post("/register", json=body)).status_code

        async def log_in() -> int:
            body = {"email": email, "password": PASSWORD}
            return (await client.simulate_post("/login", json=body)).status_code

        async def pay() -> list[tuple[int, float]]:
            answers = []
            for _ in range(PAYMENTS):
                body = delivery_body(user_id, new_account_id(), "1.00")
                started = time.monotonic()
                result = await client.simulate_post(
                    "/webhook/payment", body=json.dumps(body), headers={"Content-Type": "application/json"}
                )
                answers.append((result.status_code, time.monotonic() - started))
                await asyncio.sleep(0.01)
            return answers

        burst = [register() for _ in range(BURST)] + [log_in() for _ in range(BURST)]
        payments, *statuses = await asyncio.gather(pay(), *burst)
    assert all(status == 201 for status, _ in payments), payments
    slowest = max(seconds for _, seconds in payments)
    assert slowest < PAYMENT_ANSWER_MAX_S, f"a payment waited {slowest:.2f}s during the burst"
    # Hashing that cannot be queued is refused with 503 and Retry-After, never left to pile up.
    assert set(statuses) <= {200, 201, 503}, statuses


async def test_a_full_hashing_queue_answers_503_with_retry_after(
    settings: Settings, pool: AsyncConnectionPool
) -> None:
    passwords = Passwords(settings.argon2, jobs_max=1, waiting_max=1)
    slow = Passwords(Argon2Cost(time_cost=1, memory_cost_kib=65536, parallelism=1), jobs_max=1, waiting_max=1)
    results = await asyncio.gather(*(slow.hash("pw") for _ in range(5)), return_exceptions=True)
    busy = [r for r in results if isinstance(r, HashingBusyError)]
    assert len(busy) == 3, results  # one running, one waiting, three refused
    assert await passwords.hash("still works") != "still works"

    app = create_app(
        dataclasses.replace(
            settings,
            password_hashing=dataclasses.replace(settings.password_hashing, jobs_max=1, waiting_max=0),
        ),
        pool,
        pool_lifespan=False,
    )
    async with ASGIConductor(app) as client:
        bodies = [{"email": new_email(), "full_name": "Q", "password": PASSWORD} for _ in range(6)]
        answers = await asyncio.gather(*(client.simulate_post("/register", json=b) for b in bodies))
    refused = [a for a in answers if a.status_code == 503]
    assert refused, [a.status_code for a in answers]
    for answer in refused:
        assert answer.json["error"] == "busy"
        assert int(answer.headers["Retry-After"]) >= 1


def test_the_production_argon2_cost_is_single_lane() -> None:
    """One lane per hash, so that at most one hashing job per core bounds the CPU it takes."""
    cost = Argon2Cost()
    assert cost.parallelism == 1
    assert cost.memory_cost_kib >= 19 * 1024 and cost.time_cost >= 2  # OWASP's minimum for argon2id


async def test_hashes_of_the_former_cost_still_verify() -> None:
    former = Passwords(Argon2Cost(time_cost=3, memory_cost_kib=65536, parallelism=4))
    current = Passwords(Argon2Cost())
    old_hash = await former.hash("an old password")
    assert await current.verify(old_hash, "an old password")
    assert not await current.verify(old_hash, "another")
