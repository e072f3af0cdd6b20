"""Money moving over HTTP: POST /transfers, POST /payments/{id}/reversals, an account's
postings, and the trial balance; every refusal with its status, changing nothing.

On a database of this module's own (the pool and app fixtures below stand in for the shared
ones, and the people fixtures use them): the shared database's tests check that every balance
is the sum of its payments, which transfers and reversals would make untrue there.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest
from falcon.testing import ASGIConductor
from psycopg_pool import AsyncConnectionPool

from ledger import db
from ledger.config import Settings
from ledger.http.app import create_app
from tests.support import Person, delivery_body, event_count, new_account_id


@pytest.fixture(scope="module")
async def pool(
    server_url: str, new_migrated_database: Callable[[str], str]
) -> AsyncIterator[AsyncConnectionPool]:
    url = new_migrated_database("ledger_money")
    own = db.create_pool(db.serving_conninfo(url, statement_timeout_s=30), 1, 10)
    await own.open(wait=True)
    yield own
    await own.close()
    db.drop_database(server_url, url)


@pytest.fixture(scope="module")
def app(settings: Settings, pool: AsyncConnectionPool):  # noqa: ANN201
    return create_app(settings, pool, pool_lifespan=False)


async def pay(
    client: ASGIConductor, person: Person, amount: str, account_id: int | None = None
) -> dict[str, Any]:
    body = delivery_body(person.user.id, account_id or new_account_id(), amount)
    result = await client.simulate_post(
        "/webhook/payment", body=json.dumps(body), headers={"Content-Type": "application/json"}
    )
    assert result.status_code in (200, 201), result.text
    return result.json


async def transfer(client: ASGIConductor, person: Person, body: dict[str, Any], key: str | None = None):  # noqa: ANN201
    headers = {**person.headers, "Idempotency-Key": key or f"k-{uuid.uuid4()}"}
    return await client.simulate_post("/transfers", json=body, headers=headers)


async def postings(client: ASGIConductor, person: Person, account_id: int, **params: str):  # noqa: ANN201
    return await client.simulate_get(
        f"/user/accounts/{account_id}/postings", params=params, headers=person.headers
    )


async def test_a_transfer_moves_money_once_per_key(client: ASGIConductor, make_person) -> None:  # noqa: ANN001
    alice, bob = await make_person(), await make_person()
    source = (await pay(client, alice, "25.00"))["account_id"]
    destination = (await pay(client, bob, "1.00"))["account_id"]
    body = {"from_account_id": source, "to_account_id": destination, "amount": "10.50"}
    key = f"k-{uuid.uuid4()}"
    made = await transfer(client, alice, body, key)
    assert made.status_code == 201, made.text
    assert made.json["amount"] == Decimal("10.50") and set(made.json) == {
        "id",
        "from_account_id",
        "to_account_id",
        "amount",
        "created_at",
    }
    again = await transfer(client, alice, body, key)
    assert (again.status_code, again.json) == (200, made.json)
    conflict = await transfer(client, alice, {**body, "amount": "10.51"}, key)
    assert (conflict.status_code, conflict.json["error"]) == (409, "idempotency_conflict")
    accounts = await client.simulate_get("/user/accounts", headers=alice.headers)
    assert accounts.json == [{"id": source, "balance": Decimal("14.50")}]
    bobs = await client.simulate_get("/user/accounts", headers=bob.headers)
    assert bobs.json == [{"id": destination, "balance": Decimal("11.50")}]


async def test_every_transfer_refusal_has_its_status_and_changes_nothing(
    client: ASGIConductor,
    make_person,
    pool: AsyncConnectionPool,  # noqa: ANN001
) -> None:
    alice, bob = await make_person(), await make_person()
    source = (await pay(client, alice, "5.00"))["account_id"]
    others = (await pay(client, bob, "5.00"))["account_id"]
    good = {"from_account_id": source, "to_account_id": others, "amount": "1.00"}
    # (what, body, who, status, error, the field the refusal names)
    refusals = [
        ("not yours", {**good, "from_account_id": others, "to_account_id": source}, alice, 403, "forbidden",
         None),
        ("unknown destination", {**good, "to_account_id": new_account_id()}, alice, 404, "account_not_found",
         "to_account_id"),
        ("same account", {**good, "to_account_id": source}, alice, 422, "same_account", "to_account_id"),
        ("overdraft", {**good, "amount": "5.01"}, alice, 422, "insufficient_funds", None),
        ("zero", {**good, "amount": "0"}, alice, 422, "invalid_amount", "amount"),
        ("three places", {**good, "amount": "0.001"}, alice, 422, "invalid_amount", "amount"),
        ("exponent", {**good, "amount": "1e2"}, alice, 422, "invalid_amount", "amount"),
        ("missing amount", {k: v for k, v in good.items() if k != "amount"}, alice, 422, "invalid_field",
         "amount"),
    ]  # fmt: skip
    async with pool.connection() as conn:
        events_before = await event_count(conn)
    for name, body, person, status, code, field in refusals:
        result = await transfer(client, person, body)
        assert (result.status_code, result.json["error"]) == (status, code), f"{name}: {result.text}"
        assert result.json.get("field") == field, f"{name}: {result.text}"
        if code == "forbidden":
            assert result.json["message"] == "The source account is not one of yours."
    for headers in ({}, {"Idempotency-Key": ""}, {"Idempotency-Key": "x" * 256}, {"Idempotency-Key": "é"}):
        result = await client.simulate_post("/transfers", json=good, headers={**alice.headers, **headers})
        assert (result.status_code, result.json["error"]) == (400, "invalid_idempotency_key"), headers
    async with pool.connection() as conn:
        assert await event_count(conn) == events_before


@pytest.mark.parametrize("change", ["password", "deletion"])
async def test_a_revoked_token_moves_no_money(
    client: ASGIConductor,
    make_person,  # noqa: ANN001
    pool: AsyncConnectionPool,
    change: str,
) -> None:
    alice, bob, admin = await make_person(), await make_person(), await make_person(is_admin=True)
    source = (await pay(client, alice, "5.00"))["account_id"]
    destination = (await pay(client, bob, "5.00"))["account_id"]
    if change == "password":
        changed = await client.simulate_put(
            f"/users/update/{alice.user.id}", json={"password": "a-new-password"}, headers=admin.headers
        )
    else:
        changed = await client.simulate_delete(f"/users/delete/{alice.user.id}", headers=admin.headers)
    assert changed.status_code == 200, changed.text
    async with pool.connection() as conn:
        events_before = await event_count(conn)
    result = await transfer(
        client, alice, {"from_account_id": source, "to_account_id": destination, "amount": "1.00"}
    )
    assert (result.status_code, result.json["error"]) == (401, "unauthenticated"), result.text
    assert result.json["message"] == "The token was revoked."
    async with pool.connection() as conn:
        assert await event_count(conn) == events_before
    bobs = await client.simulate_get("/user/accounts", headers=bob.headers)
    assert bobs.json == [{"id": destination, "balance": Decimal("5.00")}]


async def test_a_reversal_refunds_part_of_a_payment_and_never_more_than_it(
    client: ASGIConductor,
    make_person,
    admin: Person,  # noqa: ANN001
) -> None:
    user = await make_person()
    paid = await pay(client, user, "10.00")
    payments = await client.simulate_get("/users/payments", headers=user.headers)
    payment_id = payments.json[0]["id"]

    async def reverse(amount: str, key: str | None = None, as_person: Person = admin, reason: str = "refund"):  # noqa: ANN202
        return await client.simulate_post(
            f"/payments/{payment_id}/reversals",
            json={"amount": amount, "reason": reason},
            headers={**as_person.headers, "Idempotency-Key": key or f"k-{uuid.uuid4()}"},
        )

    key = f"k-{uuid.uuid4()}"
    first = await reverse("4.00", key)
    assert first.status_code == 201, first.text
    assert (await reverse("4.00", key)).json == first.json
    for conflict in (await reverse("3.00", key), await reverse("4.00", key, reason="chargeback")):
        assert (conflict.status_code, conflict.json["error"]) == (409, "idempotency_conflict")
    assert (await reverse("7.00")).json["error"] == "reversal_exceeds_payment"
    assert (await reverse("6.00")).status_code == 201
    assert (await reverse("1.00", as_person=user)).status_code == 403
    missing = await client.simulate_post(
        f"/payments/{2**62}/reversals",
        json={"amount": "1.00", "reason": "x"},
        headers={**admin.headers, "Idempotency-Key": "k"},
    )
    assert (missing.status_code, missing.json["error"]) == (404, "payment_not_found")
    accounts = await client.simulate_get("/user/accounts", headers=user.headers)
    assert accounts.json == [{"id": paid["account_id"], "balance": Decimal("0.00")}]


async def test_an_accounts_postings_are_signed_newest_first_and_private(
    client: ASGIConductor,
    make_person,
    admin: Person,  # noqa: ANN001
) -> None:
    alice, bob = await make_person(), await make_person()
    account = (await pay(client, alice, "20.00"))["account_id"]
    destination = (await pay(client, bob, "1.00"))["account_id"]
    await transfer(
        client, alice, {"from_account_id": account, "to_account_id": destination, "amount": "5.00"}
    )
    page = await postings(client, alice, account)
    assert page.status_code == 200, page.text
    assert [(p["kind"], p["amount"], p["balance_after"]) for p in page.json] == [
        ("transfer", Decimal("-5.00"), Decimal("15.00")),
        ("payment", Decimal("20.00"), Decimal("20.00")),
    ]
    first = await postings(client, alice, account, limit="1")
    assert len(first.json) == 1 and 'rel="next"' in first.headers["Link"]
    assert (await postings(client, admin, account)).json == page.json
    hidden = await postings(client, bob, account)
    assert (hidden.status_code, hidden.json["error"]) == (404, "account_not_found")
    # An account that does not exist is not found, for an admin too.
    missing = await postings(client, admin, new_account_id())
    assert (missing.status_code, missing.json["error"]) == (404, "account_not_found")


async def test_the_trial_balance_is_zero_now_and_as_of_a_position(
    client: ASGIConductor, admin: Person
) -> None:
    now = await client.simulate_get("/audit/trial-balance", headers=admin.headers)
    assert now.status_code == 200, now.text
    assert now.json["total"] == 0
    kinds = {kind["kind"]: kind for kind in now.json["kinds"]}
    assert kinds["provider_clearing"]["balance"] == -kinds["user"]["balance"]
    then = await client.simulate_get("/audit/trial-balance", params={"as_of": "3"}, headers=admin.headers)
    assert then.json["total"] == 0 and then.json["as_of"] == "3"


async def test_the_trial_balance_as_of_a_position_counts_the_events_up_to_it_and_no_later(
    client: ASGIConductor, admin: Person, person: Person
) -> None:
    await pay(client, person, "12.34")
    payments = await client.simulate_get("/users/payments", headers=person.headers)
    payment_id = payments.json[0]["id"]

    async def users_balance(as_of: int) -> Decimal:
        result = await client.simulate_get(
            "/audit/trial-balance", params={"as_of": str(as_of)}, headers=admin.headers
        )
        assert result.status_code == 200, result.text
        (users,) = [kind for kind in result.json["kinds"] if kind["kind"] == "user"]
        return Decimal(str(users["balance"]))

    # A payment's id is its event's position: the cut there holds it, the one before does not.
    before, through = await users_balance(payment_id - 1), await users_balance(payment_id)
    assert through - before == Decimal("12.34")
