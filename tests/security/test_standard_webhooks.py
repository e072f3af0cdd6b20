"""The Standard Webhooks scheme beside the contract's: an HMAC over "id.timestamp.body", which
signs the raw body and so cannot be re-cut. Deliveries here are signed with the scheme's own
reference library (standardwebhooks on PyPI), not with the service's code."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from falcon.testing import ASGIConductor
from psycopg_pool import AsyncConnectionPool

from ledger import commands
from ledger.audit.verify import verify
from ledger.config import Settings
from ledger.http.app import create_app
from ledger.signatures import SIGNATURE_FIELD, STANDARD_WEBHOOKS
from tests.support import (
    ROTATED_STANDARD_WEBHOOK_KEY,
    STANDARD_WEBHOOK_KEY,
    Person,
    accepted_delivery,
    balance_of,
    delivery_body,
    event_count,
    new_account_id,
    new_transaction_id,
    standard_delivery,
    webhooks_for_tests,
)


def payment(person: Person, amount: str = "10.00", account_id: int | None = None) -> dict[str, Any]:
    return {
        "transaction_id": new_transaction_id(),
        "user_id": person.user.id,
        "account_id": account_id or new_account_id(),
        "amount": amount,
    }


async def post(client: ASGIConductor, raw: bytes, headers: dict[str, str]):  # noqa: ANN201
    return await client.simulate_post("/webhook/payment", body=raw, headers=headers)


async def test_a_delivery_signed_by_the_reference_library_is_credited_once(
    client: ASGIConductor, person: Person, pool: AsyncConnectionPool
) -> None:
    body = payment(person)
    raw, headers = standard_delivery(body)
    credited = await post(client, raw, headers)
    assert credited.status_code == 201, credited.text
    assert credited.json["status"] == "credited"
    # The provider retries with the same id and body, and a new timestamp and signature.
    raw, headers = standard_delivery(body, webhook_id=headers["webhook-id"])
    again = await post(client, raw, headers)
    assert again.status_code == 200, again.text
    assert again.json == {**credited.json, "status": "already_processed"}
    async with pool.connection() as conn:
        assert await balance_of(conn, body["account_id"]) == Decimal("10.00")


@pytest.mark.parametrize("minutes", [-6, 6])
async def test_a_timestamp_more_than_five_minutes_away_is_refused(
    client: ASGIConductor, person: Person, minutes: int
) -> None:
    raw, headers = standard_delivery(payment(person), at=datetime.now(UTC) + timedelta(minutes=minutes))
    refused = await post(client, raw, headers)
    assert (refused.status_code, refused.json["error"]) == (400, "invalid_signature"), refused.text
    assert "webhook-timestamp" in refused.json["message"]


async def test_a_replayed_webhook_id_with_another_body_is_refused(
    client: ASGIConductor, person: Person, pool: AsyncConnectionPool
) -> None:
    first = payment(person)
    raw, headers = standard_delivery(first)
    assert (await post(client, raw, headers)).status_code == 201
    other = payment(person)
    raw, replayed = standard_delivery(other, webhook_id=headers["webhook-id"])
    async with pool.connection() as conn:
        events_before = await event_count(conn)
    refused = await post(client, raw, replayed)
    assert (refused.status_code, refused.json["error"]) == (409, "webhook_id_reused"), refused.text
    async with pool.connection() as conn:
        assert await event_count(conn) == events_before
        assert await balance_of(conn, other["account_id"]) is None


async def test_a_rotated_key_verifies_and_an_unknown_key_does_not(
    client: ASGIConductor, person: Person
) -> None:
    raw, headers = standard_delivery(payment(person), key=ROTATED_STANDARD_WEBHOOK_KEY)
    assert (await post(client, raw, headers)).status_code == 201
    # A sender in the middle of a rotation signs with both keys: any signature may match.
    body = payment(person)
    raw, old = standard_delivery(body, key=b"a key this service never held")
    _, new = standard_delivery(body, webhook_id=old["webhook-id"])
    both = {**new, "webhook-signature": f"{old['webhook-signature']} {new['webhook-signature']}"}
    assert (await post(client, raw, both)).status_code == 201
    raw, headers = standard_delivery(payment(person), key=b"a key this service never held")
    refused = await post(client, raw, headers)
    assert (refused.status_code, refused.json["error"]) == (400, "invalid_signature")


async def test_a_tampered_body_and_missing_headers_are_refused(client: ASGIConductor, person: Person) -> None:
    raw, headers = standard_delivery(payment(person, "1.00"))
    tampered = raw.replace(b'"1.00"', b'"9.00"')
    assert (await post(client, tampered, headers)).json["error"] == "invalid_signature"
    for missing in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        partial = {k: v for k, v in headers.items() if k != missing}
        refused = await post(client, raw, partial)
        assert (refused.status_code, refused.json["error"]) == (400, "invalid_signature"), missing
        assert missing in refused.json["message"]


async def test_the_amount_rules_hold_for_standard_webhooks_too(client: ASGIConductor, person: Person) -> None:
    raw, headers = standard_delivery(payment(person, "250e9"))
    refused = await post(client, raw, headers)
    assert (refused.status_code, refused.json["error"]) == (422, "invalid_amount")


@pytest.fixture
async def only(settings: Settings, pool: AsyncConnectionPool):  # noqa: ANN201
    """A client of an app that accepts only the schemes given."""

    async def client(*schemes: str) -> AsyncIterator[ASGIConductor]:
        webhooks = dataclasses.replace(settings.webhooks, schemes=frozenset(schemes))
        app = create_app(dataclasses.replace(settings, webhooks=webhooks), pool, pool_lifespan=False)
        return ASGIConductor(app)

    return client


async def test_each_scheme_can_be_turned_off(only, person: Person) -> None:  # noqa: ANN001
    async with await only(SIGNATURE_FIELD) as client:
        raw, headers = standard_delivery(payment(person))
        refused = await post(client, raw, headers)
        assert (refused.status_code, refused.json["error"]) == (400, "invalid_signature")
        assert "Standard Webhooks" in refused.json["message"]
    async with await only(STANDARD_WEBHOOKS) as client:
        body = delivery_body(person.user.id, new_account_id(), "1.00")
        refused = await post(client, json.dumps(body).encode(), {"Content-Type": "application/json"})
        assert (refused.status_code, refused.json["error"]) == (400, "invalid_signature")


async def test_verify_checks_standard_webhooks_signatures_again(own_database: str, person: Person) -> None:
    async with await psycopg.AsyncConnection.connect(own_database, autocommit=True) as conn:
        for key in (STANDARD_WEBHOOK_KEY, ROTATED_STANDARD_WEBHOOK_KEY):  # either key verifies
            raw, headers = standard_delivery(payment(person, "3.00", 1) | {"user_id": 1}, key=key)
            lowered = {name.lower(): value for name, value in headers.items()}
            await commands.receive_payment(conn, accepted_delivery(raw, headers=lowered))
        held = await verify(conn, webhooks_for_tests())
        assert held.intact, held.findings
        wrong_key = dataclasses.replace(webhooks_for_tests(), standard_keys=(b"another key",))
        report = await verify(conn, wrong_key)
    assert [finding.kind for finding in report.findings] == ["bad_signature", "bad_signature"]
