"""Whatever a client sends, the answer is never a 5xx, and a refusal changes nothing."""

from __future__ import annotations

import json

from falcon.testing import ASGIConductor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg_pool import AsyncConnectionPool

from tests.support import event_count

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
webhook_like = st.fixed_dictionaries(
    {},
    optional={
        "transaction_id": field_values,
        "user_id": field_values,
        "account_id": field_values,
        "amount": field_values,
        "signature": field_values,
    },
)
user_like = st.fixed_dictionaries(
    {},
    optional={
        "email": field_values,
        "full_name": field_values,
        "password": field_values,
        "is_admin": field_values,
    },
)
bodies = st.one_of(json_values, webhook_like, user_like).map(
    lambda value: json.dumps(value).encode()
) | st.binary(max_size=200)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(path=st.sampled_from(["/webhook/payment", "/register", "/login"]), body=bodies)
async def test_public_endpoints_answer_bad_input_with_a_4xx_json_error(
    app,
    pool: AsyncConnectionPool,
    path: str,
    body: bytes,  # noqa: ANN001
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
