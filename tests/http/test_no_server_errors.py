"""Whatever a client sends, the answer is never a 5xx, and a refusal changes nothing."""

from __future__ import annotations

import json

import pytest
from falcon.asgi import App
from falcon.testing import ASGIConductor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg_pool import AsyncConnectionPool

from ledger.http.auth import Tokens
from ledger.passwords import Passwords
from ledger.projections.users import LoginRecord
from tests.support import create_user, event_count

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
NASTY_STRINGS = [
    "\x00",
    "a\x00b@example.com",
    "x@example.com\x00",
    "'; DROP TABLE events; --",
    "1e999",
    "-0",
    "NaN",
    "0.001",
    "１２３",
    "\u202e@example.com",
    "a@b.co",
    "123456",
    "x" * 5000,
]
field_values = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=300)
    | st.floats(allow_nan=False)
    | st.sampled_from(NASTY_STRINGS)
)


def bodies_with(*fields: str) -> st.SearchStrategy[dict]:
    """Objects with any subset of these fields, each holding any value."""
    return st.fixed_dictionaries({}, optional=dict.fromkeys(fields, field_values))


webhook_like = bodies_with("transaction_id", "user_id", "account_id", "amount", "signature")
user_like = bodies_with("email", "full_name", "password", "is_admin")
bodies = st.one_of(json_values, webhook_like, user_like).map(
    lambda value: json.dumps(value).encode()
) | st.binary(max_size=200)


queries = st.dictionaries(
    st.sampled_from(["limit", "after", "x", "as_of", "through", "user_id"]),
    st.sampled_from(
        [
            *("", "0", "1", "-1", "1000", "1001", "9" * 25, "abc", "\x00", "１"),
            # feed cursors and times at and past their limits
            *("1-1", "0-0", "18446744073709551615-9223372036854775807", "18446744073709551616-1"),
            *("2026-11-26T12:00:00Z", "0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59-23:59"),
            *("2026-02-30T00:00:00Z", "2026-11-26T12:00:00"),
        ]
    ),
    max_size=3,
)


@pytest.fixture(scope="session")
async def admin_headers(pool: AsyncConnectionPool, passwords: Passwords, tokens: Tokens) -> dict[str, str]:
    """An admin's headers, shared by every example (hypothesis takes no function-scoped fixture)."""
    async with pool.connection() as conn:
        admin = await create_user(conn, passwords, is_admin=True)
    token = tokens.issue(LoginRecord(admin.id, "", admin.credentials_version))
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(["/webhook/payment", "/register", "/login"]), body=bodies)
async def test_public_endpoints_answer_bad_input_with_a_4xx_json_error(
    app: App, pool: AsyncConnectionPool, path: str, body: bytes
) -> None:
    async with pool.connection() as conn:
        before = await event_count(conn)
    async with ASGIConductor(app) as client:
        result = await client.simulate_post(path, body=body, headers={"Content-Type": "application/json"})
    assert result.status_code < 500, result.text
    if result.status_code >= 400:
        assert {"error", "message"} <= set(result.json)
        async with pool.connection() as conn:
            assert await event_count(conn) == before


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    request=st.one_of(
        st.tuples(st.just("POST"), st.just("/users/create")),
        st.tuples(
            st.just("PUT"),
            st.sampled_from(["/users/update/", "/admin/users/update/"]).map(
                lambda prefix: prefix + "{victim}"
            ),
        ),
        st.tuples(
            st.just("PUT"),
            st.sampled_from(["/users/update/0", "/users/update/x", "/users/update/" + "9" * 30]),
        ),
        st.tuples(
            st.just("DELETE"),
            st.sampled_from(["/users/delete/0", "/users/delete/abc", "/users/delete/" + "9" * 30]),
        ),
        st.tuples(
            st.just("GET"),
            st.sampled_from(
                [
                    *("/users", "/admin/users", "/audit/users", "/users/payments", "/user/payments"),
                    *("/user/accounts", "/events", "/audit/summary", "/audit/payments"),
                ]
            ),
        ),
    ),
    body=bodies,
    query=queries,
)
async def test_admin_endpoints_answer_bad_input_with_a_4xx_json_error(
    app: App,
    pool: AsyncConnectionPool,
    passwords: Passwords,
    admin_headers: dict[str, str],
    request: tuple[str, str],
    body: bytes,
    query: dict[str, str],
) -> None:
    method, path = request
    if "{victim}" in path:  # a fresh user to update, so that a refusal can be seen to change nothing
        async with pool.connection() as conn:
            victim = await create_user(conn, passwords)
        path = path.format(victim=victim.id)
    async with pool.connection() as conn:
        before = await event_count(conn)
    async with ASGIConductor(app) as client:
        result = await client.simulate_request(method, path, body=body, params=query, headers=admin_headers)
    assert result.status_code < 500, result.text
    if result.status_code >= 400:
        assert {"error", "message"} <= set(result.json)
        async with pool.connection() as conn:
            assert await event_count(conn) == before
