"""POST /webhook/payment as the contract writes it: the example, every status, order of checks."""

from __future__ import annotations

import json

import pytest
from falcon.testing import ASGIConductor
from psycopg_pool import AsyncConnectionPool

from ledger.config import PUBLIC_EXAMPLE_WEBHOOK_SECRET
from tests.support import (
    CONTRACT_EXAMPLE,
    Person,
    balance_of,
    delivery_body,
    delivery_bytes,
    event_count,
    new_account_id,
    new_transaction_id,
)


async def post(client: ASGIConductor, body: bytes):  # noqa: ANN201
    return await client.simulate_post(
        "/webhook/payment", body=body, headers={"Content-Type": "application/json"}
    )


async def test_the_contract_example_credits_the_seeded_account_once(client: ASGIConductor) -> None:
    first = await post(client, json.dumps(CONTRACT_EXAMPLE).encode())
    assert first.status_code == 201, first.text
    assert first.text == (
        '{"status":"credited","transaction_id":"5eae174f-7cd0-472c-bd36-35660f00132b",'
        '"account_id":1,"amount":100.00,"balance":100.00}'
    )
    again = await post(client, json.dumps(CONTRACT_EXAMPLE).encode())
    assert again.status_code == 200
    assert again.json == {**first.json, "status": "already_processed"}


async def test_a_delivery_signed_with_a_rotated_secret_verifies(
    client: ASGIConductor, person: Person
) -> None:
    body = delivery_body(person.user.id, new_account_id(), 5, secret=PUBLIC_EXAMPLE_WEBHOOK_SECRET.encode())
    assert (await post(client, json.dumps(body).encode())).status_code == 201


@pytest.mark.parametrize(
    ("literal", "balance"), [("100.0", "100.00"), ("0.1", "0.10"), ('"100.50"', "100.50")]
)
async def test_amounts_as_written_are_verified_and_credited_exactly(
    client: ASGIConductor, person: Person, literal: str, balance: str
) -> None:
    body = delivery_body(
        person.user.id, new_account_id(), json.loads(literal) if literal.startswith('"') else literal
    )
    raw = (
        json.dumps(body).encode() if literal.startswith('"') else delivery_bytes(body, amount_literal=literal)
    )
    result = await post(client, raw)
    assert result.status_code == 201, result.text
    assert f'"balance":{balance}' in result.text


async def test_a_conflicting_redelivery_is_409_naming_the_fields(
    client: ASGIConductor, person: Person
) -> None:
    account_id, transaction_id = new_account_id(), new_transaction_id()
    await post(
        client, json.dumps(delivery_body(person.user.id, account_id, "10.00", transaction_id)).encode()
    )
    result = await post(
        client, json.dumps(delivery_body(person.user.id, account_id, "10.01", transaction_id)).encode()
    )
    assert result.status_code == 409
    assert result.json["error"] == "transaction_conflict"
    assert result.json["fields"] == ["amount"]
    assert "amount" in result.json["message"]


def refusals(person: Person, other: Person, other_account: int) -> list[tuple[str, bytes, int, str]]:
    account_id = new_account_id()
    good = delivery_body(person.user.id, account_id, "10.00")
    return [
        ("not json", b"{", 400, "malformed_request"),
        ("not an object", b"[1]", 400, "malformed_request"),
        (
            "missing field",
            json.dumps({k: v for k, v in good.items() if k != "user_id"}).encode(),
            422,
            "invalid_field",
        ),
        ("float user id", json.dumps({**good, "user_id": 1.5}).encode(), 422, "invalid_field"),
        ("huge id", json.dumps({**good, "account_id": 2**70}).encode(), 422, "invalid_field"),
        ("bad signature", json.dumps({**good, "signature": "0" * 64}).encode(), 400, "invalid_signature"),
        ("not hex signature", json.dumps({**good, "signature": "zz"}).encode(), 400, "invalid_signature"),
        (
            "bad signature beats bad amount",
            json.dumps({**good, "amount": "0.001"}).encode(),
            400,
            "invalid_signature",
        ),
        ("zero", json.dumps(delivery_body(person.user.id, account_id, 0)).encode(), 422, "invalid_amount"),
        (
            "negative",
            json.dumps(delivery_body(person.user.id, account_id, -1)).encode(),
            422,
            "invalid_amount",
        ),
        (
            "three places",
            json.dumps(delivery_body(person.user.id, account_id, "1.001")).encode(),
            422,
            "invalid_amount",
        ),
        (
            "too large",
            json.dumps(delivery_body(person.user.id, account_id, "1000000000000.01")).encode(),
            422,
            "invalid_amount",
        ),
        (
            "unknown user",
            json.dumps(delivery_body(2**62, account_id, "1.00")).encode(),
            404,
            "user_not_found",
        ),
        (
            "another's account",
            json.dumps(delivery_body(person.user.id, other_account, "1.00")).encode(),
            409,
            "account_owner_mismatch",
        ),
        ("too large body", json.dumps({**good, "padding": "x" * 70_000}).encode(), 413, "body_too_large"),
    ]


async def test_every_refusal_has_its_status_and_changes_nothing(
    client: ASGIConductor,
    pool: AsyncConnectionPool,
    make_person,  # noqa: ANN001
) -> None:
    person, other = await make_person(), await make_person()
    other_account = new_account_id()
    await post(client, json.dumps(delivery_body(other.user.id, other_account, "1.00")).encode())
    async with pool.connection() as conn:
        events_before = await event_count(conn)
    for name, body, status, code in refusals(person, other, other_account):
        result = await post(client, body)
        assert (result.status_code, result.json.get("error")) == (status, code), f"{name}: {result.text}"
        assert result.json["message"]
    async with pool.connection() as conn:
        assert await event_count(conn) == events_before
        assert await balance_of(conn, other_account) == 1
