"""Auditors: granted and revoked by admins (as events), read everything, change nothing; the
feed, the summary and everyone's payments over HTTP; balances as of a past cut of the log."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from falcon.testing import ASGIConductor
from psycopg_pool import AsyncConnectionPool

from tests.support import Person, delivery_body, event_count, new_account_id, new_email

SELECT_ROLE_EVENTS = """
    SELECT data FROM events
    WHERE stream = %(stream)s AND type = 'UserUpdated' AND data ? 'is_auditor'
    ORDER BY position
"""
SELECT_LAST_POSITION = "SELECT max(position) FROM events"

AUDIT_READS = ["/users", "/admin/users", "/audit/users", "/events", "/audit/summary", "/audit/payments"]


async def grant(client: ASGIConductor, admin: Person, person: Person, is_auditor: bool = True) -> None:
    granted = await client.simulate_put(
        f"/users/update/{person.user.id}", json={"is_auditor": is_auditor}, headers=admin.headers
    )
    assert granted.status_code == 200, granted.text
    assert granted.json["is_auditor"] is is_auditor


async def test_granting_and_revoking_the_role_are_events(
    client: ASGIConductor, admin: Person, person: Person, pool: AsyncConnectionPool
) -> None:
    await grant(client, admin, person)
    about = await client.simulate_get("/user/about", headers=person.headers)
    assert about.json["is_auditor"] is True  # the same token: roles come from the database
    await grant(client, admin, person, is_auditor=False)
    async with pool.connection() as conn:
        cursor = await conn.execute(SELECT_ROLE_EVENTS, {"stream": f"user-{person.user.id}"})
        recorded = [data for (data,) in await cursor.fetchall()]
    assert [data["is_auditor"] for data in recorded] == [True, False]


@pytest.mark.parametrize("path", AUDIT_READS)
async def test_auditors_and_admins_read_everything_users_do_not(
    client: ASGIConductor,
    admin: Person,
    make_person,
    path: str,  # noqa: ANN001
) -> None:
    auditor, plain = await make_person(), await make_person()
    await grant(client, admin, auditor)
    assert (await client.simulate_get(path, headers=auditor.headers)).status_code == 200
    assert (await client.simulate_get(path, headers=admin.headers)).status_code == 200
    refused = await client.simulate_get(path, headers=plain.headers)
    assert refused.status_code == 403 and refused.json["error"] == "forbidden"
    assert (await client.simulate_get(path)).status_code == 401
    await grant(client, admin, auditor, is_auditor=False)
    assert (await client.simulate_get(path, headers=auditor.headers)).status_code == 403


async def test_an_auditor_changes_nothing(
    client: ASGIConductor,
    admin: Person,
    make_person,
    pool: AsyncConnectionPool,  # noqa: ANN001
) -> None:
    auditor, target = await make_person(), await make_person()
    await grant(client, admin, auditor)
    async with pool.connection() as conn:
        before = await event_count(conn)
    body = {"email": new_email(), "full_name": "Nobody", "password": "secret1"}
    writes = [
        client.simulate_post("/users/create", json=body, headers=auditor.headers),
        client.simulate_post("/admin/users/create", json=body, headers=auditor.headers),
        client.simulate_put(
            f"/users/update/{target.user.id}", json={"full_name": "X"}, headers=auditor.headers
        ),
        client.simulate_put(
            f"/users/update/{auditor.user.id}", json={"is_admin": True}, headers=auditor.headers
        ),
        client.simulate_delete(f"/users/delete/{target.user.id}", headers=auditor.headers),
        client.simulate_delete(f"/admin/users/delete/{target.user.id}", headers=auditor.headers),
    ]
    for write in writes:
        result = await write
        assert result.status_code == 403, result.text
        assert result.json["error"] == "forbidden"
    async with pool.connection() as conn:
        assert await event_count(conn) == before


async def test_a_user_is_never_both_admin_and_auditor(
    client: ASGIConductor, admin: Person, person: Person
) -> None:
    both = {
        "email": new_email(),
        "full_name": "Both",
        "password": "secret1",
        "is_admin": True,
        "is_auditor": True,
    }
    assert (await client.simulate_post("/users/create", json=both, headers=admin.headers)).status_code == 409
    await grant(client, admin, person)
    promoted = await client.simulate_put(
        f"/users/update/{person.user.id}", json={"is_admin": True}, headers=admin.headers
    )
    assert promoted.status_code == 409 and promoted.json["error"] == "role_conflict"
    created = await client.simulate_post(
        "/users/create", json={**both, "is_admin": False}, headers=admin.headers
    )
    assert created.status_code == 201 and created.json["is_auditor"] is True
    registered = await client.simulate_post(
        "/register", json={"email": new_email(), "full_name": "R", "password": "secret1", "is_auditor": True}
    )
    assert registered.status_code == 422


async def test_the_feed_pages_with_its_cursor(client: ASGIConductor, admin: Person) -> None:
    first = await client.simulate_get("/events", params={"limit": "2"}, headers=admin.headers)
    assert first.status_code == 200
    assert [event["position"] for event in first.json["events"]] == [1, 2]  # the seeds lead
    second = await client.simulate_get(
        "/events", params={"limit": "2", "after": first.json["next"]}, headers=admin.headers
    )
    assert second.json["events"][0]["position"] == 3
    assert second.json["events"][0]["cursor"] != first.json["next"]
    for bad in ["x", "1-", "-1", "1-2-3", "99999999999999999999999-1"]:
        refused = await client.simulate_get("/events", params={"after": bad}, headers=admin.headers)
        assert refused.status_code == 400 and refused.json["error"] == "invalid_query", bad
    too_many = await client.simulate_get("/events", params={"limit": "1001"}, headers=admin.headers)
    assert too_many.status_code == 400


async def test_everyones_payments_page_for_auditors(
    client: ASGIConductor, admin: Person, person: Person
) -> None:
    account_id = new_account_id()
    for amount in ("1.00", "2.00", "3.00"):
        paid = await client.simulate_post(
            "/webhook/payment", json=delivery_body(person.user.id, account_id, amount)
        )
        assert paid.status_code == 201
    mine = await client.simulate_get(
        "/audit/payments", params={"user_id": str(person.user.id), "limit": "2"}, headers=admin.headers
    )
    assert [p["amount"] for p in mine.json] == [3.0, 2.0]
    assert all(p["user_id"] == person.user.id for p in mine.json)
    assert f"user_id={person.user.id}" in mine.headers["Link"]
    refused = await client.simulate_get("/audit/payments", params={"user_id": "x"}, headers=admin.headers)
    assert refused.status_code == 400


async def test_balances_as_of_a_position_or_a_time(
    client: ASGIConductor, admin: Person, person: Person, pool: AsyncConnectionPool
) -> None:
    account_id = new_account_id()
    first = await client.simulate_post(
        "/webhook/payment", json=delivery_body(person.user.id, account_id, "1.10")
    )
    assert first.status_code == 201
    async with pool.connection() as conn:
        (position,) = await (await conn.execute(SELECT_LAST_POSITION)).fetchone()  # type: ignore[misc]
    between = datetime.now(UTC).isoformat()
    second = await client.simulate_post(
        "/webhook/payment", json=delivery_body(person.user.id, account_id, "2.20")
    )
    assert second.status_code == 201

    now = await client.simulate_get("/user/accounts", headers=person.headers)
    assert now.json == [{"id": account_id, "balance": 3.3}]
    for as_of in (str(position), between):
        then = await client.simulate_get("/user/accounts", params={"as_of": as_of}, headers=person.headers)
        assert then.status_code == 200, then.text
        assert then.json == [{"id": account_id, "balance": 1.1}], as_of
        listed = await client.simulate_get(
            "/users",
            params={"as_of": as_of, "after": str(person.user.id - 1), "limit": "1"},
            headers=admin.headers,
        )
        assert listed.json[0]["id"] == person.user.id
        assert listed.json[0]["accounts"] == [{"id": account_id, "balance": 1.1}]
        first_page = await client.simulate_get(
            "/users", params={"as_of": as_of, "limit": "1"}, headers=admin.headers
        )
        assert "as_of=" in first_page.headers["Link"]  # the next page is of the same moment
    before_everything = await client.simulate_get(
        "/user/accounts", params={"as_of": "1"}, headers=person.headers
    )
    assert before_everything.json == []
    for bad in ["yesterday", "2026-11-26T12:00:00", "-5", "1.5"]:
        refused = await client.simulate_get("/user/accounts", params={"as_of": bad}, headers=person.headers)
        assert refused.status_code == 400 and refused.json["error"] == "invalid_query", bad
