"""Abuse: an unknown email costs the time of a wrong password; SQL-looking and very long strings
are stored and returned verbatim."""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from collections.abc import AsyncIterator

import falcon
import falcon.asgi
import falcon.testing
import pytest
from falcon.testing import ASGIConductor, Result
from psycopg_pool import AsyncConnectionPool

from ledger.config import Argon2Cost, Settings
from ledger.http.app import create_app
from ledger.http.bodies import (
    BODY_SIZE_MAX,
    EMAIL_LENGTH_MAX,
    FULL_NAME_LENGTH_MAX,
    PASSWORD_LENGTH_MAX,
    TRANSACTION_ID_LENGTH_MAX,
)
from tests.support import Person, delivery_body, new_account_id, new_email

# Medians of interleaved tries; the band is wide because the machine is shared and noisy. What
# it must catch is a difference in kind: skipping argon2 for an unknown email makes that login
# about a hundred times faster at the realistic cost.
RATIO_BAND = (0.5, 2.0)


def ratio_of_medians(first: list[float], second: list[float]) -> float:
    return statistics.median(first) / statistics.median(second)


async def timed_logins(
    client: ASGIConductor, known_email: str, tries: int
) -> tuple[list[float], list[float]]:
    """Return the times of logins with a wrong password and with an unknown email, interleaved
    (so that a change in the machine's load hits both alike); check that each answer is the same."""
    wrong_password_s, unknown_email_s = [], []
    answers = set()
    for _ in range(tries):
        for email, times in ((known_email, wrong_password_s), (new_email(), unknown_email_s)):
            started = time.perf_counter()
            result = await client.simulate_post("/login", json={"email": email, "password": "wrong-password"})
            times.append(time.perf_counter() - started)
            answers.add((result.status_code, result.text))
    assert answers == {(401, '{"error":"invalid_credentials","message":"Wrong email or password."}')}
    return wrong_password_s, unknown_email_s


async def test_an_unknown_email_and_a_wrong_password_take_a_similar_time(
    client: ASGIConductor, person: Person
) -> None:
    """At the tests' cheapest argon2 a login is mostly the database and HTTP: this shows both
    paths do the same work there (the same lookups, the same throttle count), over many tries."""
    wrong_password_s, unknown_email_s = await timed_logins(client, person.user.email, tries=40)
    ratio = ratio_of_medians(unknown_email_s, wrong_password_s)
    assert RATIO_BAND[0] < ratio < RATIO_BAND[1], f"unknown/wrong median ratio {ratio:.2f}"


@pytest.fixture
async def realistic_client(settings: Settings, pool: AsyncConnectionPool) -> AsyncIterator[ASGIConductor]:
    """An app hashing at production cost (argon2-cffi's defaults: 3 passes over 64 MiB)."""
    app = create_app(dataclasses.replace(settings, argon2=Argon2Cost()), pool, pool_lifespan=False)
    async with ASGIConductor(app) as conductor:
        yield conductor


async def test_at_the_production_argon2_cost_an_unknown_email_still_costs_a_verification(
    realistic_client: ASGIConductor,
) -> None:
    """Here argon2 dominates, so a few tries show whether the decoy hash is really verified."""
    email = new_email()
    registered = await realistic_client.simulate_post(
        "/register", json={"email": email, "full_name": "Slow Hash", "password": "a-real-password"}
    )
    assert registered.status_code == 201
    wrong_password_s, unknown_email_s = await timed_logins(realistic_client, email, tries=5)
    ratio = ratio_of_medians(unknown_email_s, wrong_password_s)
    assert RATIO_BAND[0] < ratio < RATIO_BAND[1], f"unknown/wrong median ratio {ratio:.2f}"
    median_ms = statistics.median(wrong_password_s) * 1000
    print(f"median login at production cost: {median_ms:.0f} ms, unknown/wrong ratio {ratio:.2f}")


SQL_LIKE = "'; DROP TABLE events; -- %s %(email)s $1 {} \\ \\' \" ) OR '1'='1 /* */ ; COMMIT; ʼ 💸"


def fill(pattern: str, length: int) -> str:
    return (pattern * (length // len(pattern) + 1))[:length]


async def test_sql_looking_and_longest_strings_are_stored_and_returned_verbatim(
    client: ASGIConductor, admin: Person
) -> None:
    domain = "@example.com"
    email = fill("o'Brien\");DROP/**/TABLE/**/users;--%s$1", EMAIL_LENGTH_MAX - len(domain)) + domain
    full_name = fill(SQL_LIKE, FULL_NAME_LENGTH_MAX)
    password = fill(SQL_LIKE, PASSWORD_LENGTH_MAX)
    assert (len(email), len(full_name), len(password)) == (
        EMAIL_LENGTH_MAX,
        FULL_NAME_LENGTH_MAX,
        PASSWORD_LENGTH_MAX,
    )

    created = await client.simulate_post(
        "/register", json={"email": email, "full_name": full_name, "password": password}
    )
    assert created.status_code == 201, created.text
    assert (created.json["email"], created.json["full_name"]) == (email, full_name)
    user_id = created.json["id"]

    login = await client.simulate_post("/login", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    headers = {"Authorization": f"Bearer {login.json['token']}"}
    about = await client.simulate_get("/user/about", headers=headers)
    assert (about.json["email"], about.json["full_name"]) == (email, full_name)
    listed = await client.simulate_get(
        "/users", params={"after": str(user_id - 1), "limit": "1"}, headers=admin.headers
    )
    assert [(row["email"], row["full_name"]) for row in listed.json] == [(email, full_name)]

    transaction_id = fill(SQL_LIKE.replace("💸", "$"), TRANSACTION_ID_LENGTH_MAX)
    body = delivery_body(user_id, new_account_id(), "1.00", transaction_id)
    credited = await client.simulate_post("/webhook/payment", json=body)
    assert credited.status_code == 201, credited.text
    assert credited.json["transaction_id"] == transaction_id
    again = await client.simulate_post("/webhook/payment", json=body)
    assert (again.status_code, again.json["transaction_id"]) == (200, transaction_id)
    payments = await client.simulate_get("/users/payments", headers=headers)
    assert [payment["transaction_id"] for payment in payments.json] == [transaction_id]

    # And one character past each limit is refused, not cut.
    too_long = await client.simulate_post(
        "/register", json={"email": new_email(), "full_name": full_name + "x", "password": password}
    )
    assert (too_long.status_code, too_long.json["error"]) == (422, "invalid_field")


async def test_a_body_is_taken_up_to_64_kib_and_refused_past_it_saying_so(client: ASGIConductor) -> None:
    login = json.dumps({"email": "nobody@example.com", "password": "wrong-password"}).encode()
    at_limit = login[:-1] + b" " * (BODY_SIZE_MAX - len(login)) + b"}"
    judged = await client.simulate_post("/login", body=at_limit, headers={"Content-Type": "application/json"})
    assert judged.status_code == 401, judged.text  # read whole, and judged on what it says
    past = await client.simulate_post(
        "/login", body=at_limit + b" ", headers={"Content-Type": "application/json"}
    )
    assert past.status_code == 413, past.text
    assert past.json == {
        "error": "body_too_large",
        "message": f"The body may be at most {BODY_SIZE_MAX} bytes.",
    }


async def post_chunked(app: falcon.asgi.App, path: str, body: bytes, chunk_size: int) -> tuple[Result, int]:
    """POST body in chunks without a Content-Length, as a chunked sender does; return the
    answer and how many of the body's bytes the service pulled."""
    scope = falcon.testing.create_scope(
        path=path, method="POST", headers={"Content-Type": "application/json"}
    )
    chunks = [body[start : start + chunk_size] for start in range(0, len(body), chunk_size)]
    pulled = 0

    async def receive() -> dict[str, object]:
        nonlocal pulled
        if not chunks:
            return {"type": "http.disconnect"}
        chunk = chunks.pop(0)
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    answer = falcon.testing.ASGIResponseEventCollector()
    await app(scope, receive, answer)
    return Result(answer.body_chunks, falcon.code_to_http_status(answer.status), answer.headers), pulled


async def test_a_body_without_a_length_is_taken_up_to_64_kib_and_never_read_past_it(
    app: falcon.asgi.App,
) -> None:
    """A sender may stream a body without saying its size: the limit holds all the same, and
    the service stops reading just past it instead of taking in whatever is sent."""
    login = json.dumps({"email": "nobody@example.com", "password": "wrong-password"}).encode()
    at_limit = login[:-1] + b" " * (BODY_SIZE_MAX - len(login)) + b"}"
    judged, _ = await post_chunked(app, "/login", at_limit, chunk_size=8192)
    assert judged.status_code == 401, judged.text

    endless = at_limit + b" " * (3 * BODY_SIZE_MAX)
    past, pulled = await post_chunked(app, "/login", endless, chunk_size=8192)
    assert past.status_code == 413, past.text
    assert past.json == {
        "error": "body_too_large",
        "message": f"The body may be at most {BODY_SIZE_MAX} bytes.",
    }
    assert pulled <= BODY_SIZE_MAX + 8192, pulled
