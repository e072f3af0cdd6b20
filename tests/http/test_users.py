"""Registration and a user's own data: about, accounts with balances, payments."""

from __future__ import annotations

import json

import pytest
from falcon.testing import ASGIConductor

from tests.support import Person, delivery_body, new_account_id, new_email


async def pay(client: ASGIConductor, user_id: int, account_id: int, amount: str) -> dict:
    result = await client.simulate_post("/webhook/payment", json=delivery_body(user_id, account_id, amount))
    assert result.status_code == 201, result.text
    return result.json


async def test_register_creates_a_user_who_can_log_in(client: ASGIConductor) -> None:
    email = new_email()
    created = await client.simulate_post(
        "/register", json={"email": email, "full_name": "New Person", "password": "secret1"}
    )
    assert created.status_code == 201, created.text
    assert set(created.json) == {"id", "email", "full_name", "is_admin", "is_auditor"}
    assert (created.json["email"], created.json["full_name"], created.json["is_admin"]) == (
        email,
        "New Person",
        False,
    )
    login = await client.simulate_post("/login", json={"email": email, "password": "secret1"})
    assert login.status_code == 200
    assert login.json["user_id"] == created.json["id"]


async def test_register_refuses_a_taken_email_in_any_case(client: ASGIConductor, person: Person) -> None:
    body = {"email": person.user.email.upper(), "full_name": "Copy", "password": "secret1"}
    result = await client.simulate_post("/register", json=body)
    assert result.status_code == 409
    assert result.json["error"] == "email_taken"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"nope", 400),
        (b"[]", 400),
        (json.dumps({"email": "bad", "full_name": "A", "password": "secret1"}).encode(), 422),
        (json.dumps({"email": "a@example.com", "full_name": "A", "password": "short"}).encode(), 422),
        (
            json.dumps(
                {"email": "a@example.com", "full_name": "A", "password": "secret1", "is_admin": True}
            ).encode(),
            422,
        ),
        (json.dumps({"email": "a@example.com", "password": "secret1"}).encode(), 422),
    ],
)
async def test_register_refuses_bad_input(client: ASGIConductor, body: bytes, status: int) -> None:
    result = await client.simulate_post("/register", body=body, headers={"Content-Type": "application/json"})
    assert result.status_code == status, result.text
    assert {"error", "message"} <= set(result.json)


async def test_about_shows_the_token_user(client: ASGIConductor, person: Person) -> None:
    result = await client.simulate_get("/user/about", headers=person.headers)
    assert result.json == {
        "id": person.user.id,
        "email": person.user.email,
        "full_name": person.user.full_name,
        "is_admin": False,
        "is_auditor": False,
    }


async def test_accounts_show_exact_balances_by_id(client: ASGIConductor, person: Person) -> None:
    low, high = sorted([new_account_id(), new_account_id()])
    await pay(client, person.user.id, high, "1100.50")
    await pay(client, person.user.id, low, "0.10")
    await pay(client, person.user.id, low, "0.20")
    result = await client.simulate_get("/user/accounts", headers=person.headers)
    assert result.status_code == 200
    # Exact decimals with two places, written as JSON numbers: never 0.30000000000000004.
    assert result.text == f'[{{"id":{low},"balance":0.30}},{{"id":{high},"balance":1100.50}}]'


async def test_a_user_sees_only_their_own_accounts_and_payments(client: ASGIConductor, make_person) -> None:  # noqa: ANN001
    alice, bob = await make_person(), await make_person()
    await pay(client, alice.user.id, new_account_id(), "5.00")
    assert (await client.simulate_get("/user/accounts", headers=bob.headers)).json == []
    assert (await client.simulate_get("/users/payments", headers=bob.headers)).json == []


@pytest.mark.parametrize("path", ["/users/payments", "/user/payments"])
async def test_payments_come_newest_first_in_pages(client: ASGIConductor, person: Person, path: str) -> None:
    account_id = new_account_id()
    sent = [await pay(client, person.user.id, account_id, f"{i}.00") for i in range(1, 6)]
    everything = await client.simulate_get(path, headers=person.headers)
    assert [p["transaction_id"] for p in everything.json] == [p["transaction_id"] for p in reversed(sent)]
    assert set(everything.json[0]) == {"id", "transaction_id", "account_id", "amount", "created_at"}
    assert "Link" not in everything.headers

    first = await client.simulate_get(path, params={"limit": "2"}, headers=person.headers)
    assert [p["amount"] for p in first.json] == [5, 4]
    link = first.headers["Link"]
    assert link == f'<{path}?limit=2&after={first.json[-1]["id"]}>; rel="next"'
    target = link[1 : link.index(">")]
    second = await client.simulate_get(target, headers=person.headers)
    assert [p["amount"] for p in second.json] == [3, 2]
    assert '"amount":3.00' in second.text


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=x", "after=-1", "after=abc"])
async def test_bad_page_parameters_are_400(client: ASGIConductor, person: Person, query: str) -> None:
    result = await client.simulate_get("/users/payments", query_string=query, headers=person.headers)
    assert result.status_code == 400
    assert result.json["error"] == "invalid_query"
