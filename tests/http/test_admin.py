"""The admins' user management: list with balances, create, update, delete."""

from __future__ import annotations

import psycopg
import pytest
from falcon.testing import ASGIConductor

from tests.support import Person, delivery_body, new_account_id, new_email


@pytest.mark.parametrize("prefix", ["", "/admin"])
async def test_admins_list_users_with_accounts_and_balances(
    client: ASGIConductor, admin: Person, person: Person, prefix: str
) -> None:
    account_id = new_account_id()
    paid = await client.simulate_post(
        "/webhook/payment", json=delivery_body(person.user.id, account_id, "42.42")
    )
    assert paid.status_code == 201
    listed = await client.simulate_get(f"{prefix}/users", params={"limit": "1000"}, headers=admin.headers)
    assert listed.status_code == 200
    ids = [user["id"] for user in listed.json]
    assert ids == sorted(ids)
    mine = next(user for user in listed.json if user["id"] == person.user.id)
    assert mine == {
        "id": person.user.id,
        "email": person.user.email,
        "full_name": person.user.full_name,
        "is_admin": False,
        "is_auditor": False,
        "accounts": [{"id": account_id, "balance": 42.42}],
    }
    seeded_user = next(user for user in listed.json if user["id"] == 1)
    assert seeded_user["email"] == "testuser@example.com"


async def test_the_user_list_pages_with_a_link(client: ASGIConductor, admin: Person) -> None:
    first = await client.simulate_get("/users", params={"limit": "2"}, headers=admin.headers)
    assert len(first.json) == 2
    link = first.headers["Link"]
    second = await client.simulate_get(link[1 : link.index(">")], headers=admin.headers)
    assert second.json[0]["id"] > first.json[-1]["id"]


@pytest.mark.parametrize("prefix", ["", "/admin"])
async def test_admins_create_users_and_admins(client: ASGIConductor, admin: Person, prefix: str) -> None:
    email = new_email()
    body = {"email": email, "full_name": "Made By Admin", "password": "secret1", "is_admin": True}
    created = await client.simulate_post(f"{prefix}/users/create", json=body, headers=admin.headers)
    assert created.status_code == 201, created.text
    assert created.json["is_admin"] is True
    taken = await client.simulate_post(f"{prefix}/users/create", json=body, headers=admin.headers)
    assert taken.status_code == 409
    assert taken.json["error"] == "email_taken"
    plain = await client.simulate_post(
        f"{prefix}/users/create",
        json={"email": new_email(), "full_name": "P", "password": "secret1"},
        headers=admin.headers,
    )
    assert plain.json["is_admin"] is False


@pytest.mark.parametrize("prefix", ["", "/admin"])
async def test_admins_update_users(client: ASGIConductor, admin: Person, make_person, prefix: str) -> None:  # noqa: ANN001
    person, other = await make_person(), await make_person()
    path = f"{prefix}/users/update/{person.user.id}"
    new = new_email()
    updated = await client.simulate_put(
        path,
        json={"email": new, "full_name": "Renamed", "is_admin": True, "is_auditor": False},
        headers=admin.headers,
    )
    assert updated.status_code == 200, updated.text
    assert updated.json == {
        "id": person.user.id,
        "email": new,
        "full_name": "Renamed",
        "is_admin": True,
        "is_auditor": False,
    }
    login = await client.simulate_post("/login", json={"email": new, "password": "correct horse"})
    assert login.status_code == 200

    taken = await client.simulate_put(path, json={"email": other.user.email.upper()}, headers=admin.headers)
    assert (taken.status_code, taken.json["error"]) == (409, "email_taken")
    empty = await client.simulate_put(path, json={}, headers=admin.headers)
    assert empty.status_code == 422
    unknown = await client.simulate_put(
        f"{prefix}/users/update/999999999999", json={"full_name": "X"}, headers=admin.headers
    )
    assert (unknown.status_code, unknown.json["error"]) == (404, "user_not_found")
    not_an_id = await client.simulate_put(
        f"{prefix}/users/update/abc", json={"full_name": "X"}, headers=admin.headers
    )
    assert not_an_id.status_code == 404


@pytest.mark.parametrize("prefix", ["", "/admin"])
async def test_admins_delete_users_whose_events_stay(
    client: ASGIConductor, admin: Person, person: Person, database_url: str, prefix: str
) -> None:
    account_id = new_account_id()
    await client.simulate_post("/webhook/payment", json=delivery_body(person.user.id, account_id, "9.99"))
    deleted = await client.simulate_delete(f"{prefix}/users/delete/{person.user.id}", headers=admin.headers)
    assert deleted.status_code == 200
    assert deleted.json == {"message": "User deleted successfully"}

    listed = await client.simulate_get("/users", params={"limit": "1000"}, headers=admin.headers)
    assert person.user.id not in [user["id"] for user in listed.json]
    again = await client.simulate_delete(f"{prefix}/users/delete/{person.user.id}", headers=admin.headers)
    assert (again.status_code, again.json["error"]) == (404, "user_not_found")
    with psycopg.connect(database_url) as conn:
        types = conn.execute(
            "SELECT type FROM events WHERE stream IN (%s, %s) ORDER BY position",
            (f"user-{person.user.id}", f"account-{account_id}"),
        ).fetchall()
    assert [t for (t,) in types] == ["UserRegistered", "AccountOpened", "PaymentReceived", "UserDeleted"]
    # The deleted user's email may be registered again.
    again = await client.simulate_post(
        "/register", json={"email": person.user.email, "full_name": "B", "password": "secret1"}
    )
    assert again.status_code == 201


async def test_an_admin_cannot_delete_itself(client: ASGIConductor, admin: Person) -> None:
    result = await client.simulate_delete(f"/users/delete/{admin.user.id}", headers=admin.headers)
    assert (result.status_code, result.json["error"]) == (409, "cannot_delete_self")
    assert (await client.simulate_get("/user/about", headers=admin.headers)).status_code == 200
