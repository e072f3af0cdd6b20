"""A signature buys one credit, ever.

The contract signs f"{account_id}{amount}{transaction_id}{user_id}{secret}": the fields are
joined without separators, so whoever has seen one genuine delivery (a log, an auditor's
export, the network) can cut its signed text into other fields and the signature still holds.
Each test here is one such attack; all of them were credited before the service refused them.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from decimal import Decimal
from typing import Any

import psycopg
from falcon.testing import ASGIConductor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg_pool import AsyncConnectionPool

from ledger import commands, errors
from ledger.audit.verify import verify
from ledger.passwords import Passwords
from ledger.signatures import Webhooks
from tests.support import (
    TEST_WEBHOOK_SECRET,
    Person,
    balance_of,
    create_user,
    delivery,
    delivery_body,
    delivery_bytes,
    event_count,
    new_account_id,
)

SELECT_BALANCE_TOTAL = "SELECT COALESCE(sum(balance), 0) FROM accounts"
JSON_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
DIGITS = re.compile(r"[1-9][0-9]{0,18}")


async def post(client: ASGIConductor, body: bytes):  # noqa: ANN201
    return await client.simulate_post(
        "/webhook/payment", body=body, headers={"Content-Type": "application/json"}
    )


def resplit(
    genuine: dict[str, Any], account_id: str, amount: str, transaction_id: str, user_id: str
) -> bytes:
    """The genuine delivery's signature over other fields cut from the same signed text,
    the amount written as a JSON number."""
    body = {
        "transaction_id": transaction_id,
        "user_id": int(user_id),
        "account_id": int(account_id),
        "amount": "@",
        "signature": genuine["signature"],
    }
    return delivery_bytes(body, amount_literal=amount)


async def test_the_contracts_own_example_recut_into_a_larger_amount_is_refused(
    client: ASGIConductor, person: Person, pool: AsyncConnectionPool
) -> None:
    """As in the contract's example: amount 100 with a transaction id starting with 5 becomes
    amount 1005 under the same signature."""
    account_id = new_account_id()
    genuine = delivery_body(person.user.id, account_id, 100, "5" + str(uuid.uuid4()))
    assert (await post(client, json.dumps(genuine).encode())).status_code == 201
    forged = resplit(genuine, str(account_id), "1005", genuine["transaction_id"][1:], str(person.user.id))
    refused = await post(client, forged)
    assert refused.status_code == 409, refused.text
    assert refused.json["error"] == "signature_reused"
    async with pool.connection() as conn:
        assert await balance_of(conn, account_id) == Decimal("100.00")


async def test_an_exponent_cut_from_the_transaction_id_is_refused(
    client: ASGIConductor, person: Person, pool: AsyncConnectionPool
) -> None:
    """amount 250 with a transaction id starting with e9 became 250e9: 250,000,000,000.00."""
    account_id = new_account_id()
    genuine = delivery_body(person.user.id, account_id, 250, "e9" + uuid.uuid4().hex)
    assert (await post(client, json.dumps(genuine).encode())).status_code == 201
    forged = resplit(genuine, str(account_id), "250e9", genuine["transaction_id"][2:], str(person.user.id))
    refused = await post(client, forged)
    assert refused.status_code == 422, refused.text
    assert refused.json["error"] == "invalid_amount"
    async with pool.connection() as conn:
        assert await balance_of(conn, account_id) == Decimal("250.00")


async def test_exponents_are_refused_as_numbers_and_as_strings(client: ASGIConductor, person: Person) -> None:
    for literal in ("1e2", "1E2", "1.5e1", "100e0"):
        number = delivery_body(person.user.id, new_account_id(), literal)
        result = await post(client, delivery_bytes(number, amount_literal=literal))
        assert (result.status_code, result.json["error"]) == (422, "invalid_amount"), literal
        assert "exponent" in result.json["message"]
        string = delivery_body(person.user.id, new_account_id(), literal)  # signed as "1e2"
        result = await post(client, json.dumps(string).encode())
        assert (result.status_code, result.json["error"]) == (422, "invalid_amount"), literal


async def test_digits_moved_across_the_account_id_and_the_amount_open_no_account(
    client: ASGIConductor, person: Person, pool: AsyncConnectionPool
) -> None:
    """account 1234, amount 5, transaction 7... became account 123, amount 457: a new account."""
    account_id = new_account_id()
    while str(account_id).endswith("0"):  # the moved digit leads the new amount: JSON wants it non-zero
        account_id = new_account_id()
    genuine = delivery_body(person.user.id, account_id, 5, "7" + str(uuid.uuid4()))
    assert (await post(client, json.dumps(genuine).encode())).status_code == 201
    text = str(account_id)
    forged = resplit(genuine, text[:-1], text[-1] + "57", genuine["transaction_id"][1:], str(person.user.id))
    async with pool.connection() as conn:
        events_before = await event_count(conn)
    refused = await post(client, forged)
    assert refused.status_code == 409, refused.text
    assert refused.json["error"] == "signature_reused"
    async with pool.connection() as conn:
        assert await event_count(conn) == events_before
        assert await balance_of(conn, int(text[:-1])) is None


async def test_concurrent_recuts_of_one_signature_credit_once(
    database_url: str, passwords: Passwords
) -> None:
    """Deliveries under one signature with different transaction ids, all at once, straight
    through the command: the database, not a check in Python, lets one through."""
    connections = [await psycopg.AsyncConnection.connect(database_url, autocommit=True) for _ in range(8)]
    try:
        user = await create_user(connections[0], passwords)
        account_id = new_account_id()
        genuine = delivery(user.id, account_id, "12.00", "12" + uuid.uuid4().hex)
        # The same signed text, cut 8 ways: "12.00" + "12<hex>" -> "12.001" + "2<hex>", ...
        # (the command does not check signatures: it trusts its caller, and the database
        # still refuses a second use of the signature).
        recuts = [genuine] + [
            type(genuine)(
                transaction_id=genuine.transaction_id + f"-{index}",
                user_id=user.id,
                account_id=account_id,
                amount="12.00",
                signature=genuine.signature,
            )
            for index in range(7)
        ]
        outcomes = await asyncio.gather(
            *(commands.receive_payment(conn, d) for conn, d in zip(connections, recuts, strict=True)),
            return_exceptions=True,
        )
    finally:
        for conn in connections:
            await conn.close()
    credited = [o for o in outcomes if isinstance(o, commands.PaymentOutcome)]
    refused = [o for o in outcomes if isinstance(o, errors.SignatureReusedError)]
    assert len(credited) == 1 and len(refused) == 7, outcomes
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        assert await balance_of(conn, account_id) == Decimal("12.00")


# Property: every other cut of a genuine delivery's signed text is refused --------------------

account_ids = st.integers(1, 10**7).map(lambda n: n * 1000 + 1)
# Genuine amounts as providers write them: "12", "0.05", "12.50", "12.5".
amounts = st.one_of(
    st.integers(1, 99999).map(str),
    st.integers(1, 999999).map(lambda cents: f"{cents // 100}.{cents % 100:02d}"),
    st.integers(1, 9999).map(lambda tenths: f"{tenths // 10}.{tenths % 10}"),
)
# Transaction ids that start and end like numbers, so that many cuts parse.
transaction_ids = st.tuples(
    st.text(alphabet="0123456789e.-", min_size=0, max_size=4),
    st.text(alphabet="abcdef0123456789-", min_size=1, max_size=12),
    st.text(alphabet="0123456789", min_size=0, max_size=3),
).map(lambda parts: "".join(parts))


def other_cuts(signed: str, genuine: tuple[str, str, str, str]) -> list[tuple[str, str, str, str]]:
    """Every (account_id, amount, transaction_id, user_id) that writes signed, other than the
    genuine one, whose ids are integers and whose amount is a JSON number."""
    cuts = []
    for i in range(1, len(signed)):
        if not DIGITS.fullmatch(signed[:i]):
            continue
        for k in range(len(signed) - 1, i, -1):
            if not DIGITS.fullmatch(signed[k:]):
                continue
            for j in range(i + 1, k):
                cut = (signed[:i], signed[i:j], signed[j:k], signed[k:])
                if cut != genuine and JSON_NUMBER.fullmatch(cut[1]) and 1 <= len(cut[2]) <= 128:
                    cuts.append(cut)
    return cuts


async def balance_total(pool: AsyncConnectionPool) -> Decimal:
    async with pool.connection() as conn:
        row = await (await conn.execute(SELECT_BALANCE_TOTAL)).fetchone()
    assert row is not None
    return row[0]


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(account_id=account_ids, amount=amounts, transaction_id=transaction_ids, as_string=st.booleans())
async def test_no_other_cut_of_a_genuine_delivery_is_ever_credited(
    app: Any,
    pool: AsyncConnectionPool,
    passwords: Passwords,
    account_id: int,
    amount: str,
    transaction_id: str,
    as_string: bool,
) -> None:
    async with pool.connection() as conn:
        user = await create_user(conn, passwords)
    transaction_id = f"{transaction_id}{uuid.uuid4().hex[:6]}{transaction_id[::-1]}"
    account_id += uuid.uuid4().int % 1000 * 10**10  # a fresh account each example
    genuine = delivery_body(user.id, account_id, amount, transaction_id)  # signs the text of amount
    raw = json.dumps(genuine).encode() if as_string else delivery_bytes(genuine, amount_literal=amount)
    async with ASGIConductor(app) as client:
        total_before = await balance_total(pool)
        async with pool.connection() as conn:
            events_before = await event_count(conn)
        assert (await post(client, raw)).status_code == 201
        signed = f"{account_id}{amount}{transaction_id}{user.id}"
        cuts = other_cuts(signed, (str(account_id), amount, transaction_id, str(user.id)))
        for cut in cuts:
            as_number = resplit(genuine, *cut)
            as_text = json.dumps({**json.loads(as_number, parse_float=str), "amount": cut[1]}).encode()
            for forged in (as_number, as_text):
                result = await post(client, forged)
                assert result.status_code >= 400, (cut, result.text)
    assert await balance_total(pool) == total_before + Decimal(amount)
    async with pool.connection() as conn:
        assert await event_count(conn) == events_before + 2  # AccountOpened, PaymentReceived


# verify names a signature recorded under two transaction ids -----------------------------


async def test_verify_reports_a_signature_under_two_transaction_ids(own_database: str) -> None:
    """A log written before the database refused re-cut deliveries (here: appended straight
    into the table, as the owner can) still holds them: verify names them."""
    async with await psycopg.AsyncConnection.connect(own_database, autocommit=True) as conn:
        genuine = delivery_body(1, 1, 100, "5eae" + uuid.uuid4().hex)
        recut = {**genuine, "amount": "1005", "transaction_id": genuine["transaction_id"][1:]}
        for body in (genuine, recut):
            await conn.execute(
                "INSERT INTO events (stream, type, data, transaction_id) "
                "VALUES ('account-1', 'PaymentReceived', %(data)s, %(tx)s)",
                {"data": json.dumps({**body, "amount": str(body["amount"])}), "tx": body["transaction_id"]},
            )
        report = await verify(conn, Webhooks(secrets=(TEST_WEBHOOK_SECRET,)))
    reused = [finding for finding in report.findings if finding.kind == "reused_signature"]
    assert len(reused) == 1, report.findings
    assert genuine["transaction_id"] in reused[0].detail and recut["transaction_id"] in reused[0].detail
    assert not report.intact
