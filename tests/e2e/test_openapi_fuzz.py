"""schemathesis against the real server: every operation of /openapi.json, with all its checks,
at least 100 examples each (fewer where an operation has fewer distinct requests, such as a GET
without parameters), valid and invalid data alike.

Authenticated as the operation says (x-ledger-access): the seeded user for user routes, the
seeded admin for admin routes. Valid webhook deliveries are signed with the server's secret
before they are sent, so the credit path is fuzzed too, not only the signature check. The
fuzzed admin may delete and change any user but the two whose tokens the test uses.
"""

from __future__ import annotations

import json
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from ledger import signatures
from ledger.http import bodies, openapi, parse
from ledger.http.auth import ADMIN, AUDIT, USER
from ledger.http.openapi import ACCESS_EXTENSION
from ledger.http.routes import ROUTES
from tests.support import TEST_WEBHOOK_SECRET, delivery_body
from tests.support.servers import SEEDED_PASSWORD, LiveServer

FUZZ_USER_ID, FUZZ_ADMIN_ID = 1, 2  # the seeded user and admin of the fresh database
FUZZ_AUDITOR: dict[str, int] = {}  # the auditor the tokens fixture makes, by its id
# Accounts the tokens fixture funds: the seeded user's (a source for transfers) and the admin's.
FUZZ_SOURCE_ACCOUNT, FUZZ_DESTINATION_ACCOUNT = 1, 9_000_000_002
# Refusals by a rule that no schema can state, answered to requests of valid form: a cursor
# beyond the feed's end, a transfer beyond the balance or to its own source, a reversal beyond
# its payment. They are not valid requests turned away.
RULE_REFUSALS = {("/audit/summary", 400), ("/transfers", 422), ("/payments/{payment_id}/reversals", 422)}
EXAMPLES_PER_OPERATION = 100

# The document as create_app builds it; test_the_server_serves_this_document checks that the
# server serves the same. (schemathesis.pytest.from_fixture would load it from the server, but
# breaks on pytest 9.2, which dropped the Node._nodeid it sets.)
schema = schemathesis.openapi.from_dict(openapi.document(ROUTES))


# The seeded user's and admin's tokens, by access; filled by the tokens fixture before any call.
TOKENS: dict[str, str] = {}


@schema.auth(refresh_interval=None, retry_on=[])
class SeededPeople:
    """schemathesis's own auth, not a header of ours: so that its negative cases (no token) and
    its ignored_auth check (a wrong token) see their requests go out as generated."""

    def get(self, case: Any, ctx: Any) -> str | None:
        return TOKENS.get(case.operation.definition.raw[ACCESS_EXTENSION])

    def set(self, case: Any, token: str, ctx: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
def tokens(live_server: LiveServer) -> dict[str, str]:
    admin = live_server.token("testadmin@example.com")
    email = f"auditor-{uuid.uuid4().hex[:12]}@example.com"
    body = {"email": email, "full_name": "Fuzz Auditor", "password": SEEDED_PASSWORD, "is_auditor": True}
    created = httpx.post(
        f"{live_server.url}/users/create", json=body, headers={"Authorization": f"Bearer {admin}"}
    )
    assert created.status_code == 201, created.text
    FUZZ_AUDITOR["id"] = created.json()["id"]
    TOKENS.update(
        {USER: live_server.token("testuser@example.com"), ADMIN: admin, AUDIT: live_server.token(email)}
    )
    for user_id, account_id, amount in (
        (FUZZ_USER_ID, FUZZ_SOURCE_ACCOUNT, "1000000000000.00"),
        (FUZZ_ADMIN_ID, FUZZ_DESTINATION_ACCOUNT, "1.00"),
    ):
        paid = httpx.post(
            f"{live_server.url}/webhook/payment", json=delivery_body(user_id, account_id, amount)
        )
        assert paid.status_code == 201, paid.text
    return TOKENS


def path_user_id(case: Any) -> int | None:
    """The user id of the case's path as the service reads it, if it reads one."""
    text = str((case.path_parameters or {}).get("user_id", ""))
    return int(text) if parse.INTEGER_STRING.fullmatch(text) else None


def targets_a_fixture(case: Any) -> bool:
    """Whether the case would change or delete the user or admin whose tokens the test uses.

    Deleting itself is refused by the service (409), which the fuzz may well try.
    """
    protected = {FUZZ_USER_ID, FUZZ_AUDITOR["id"]}
    if case.method != "DELETE":
        protected.add(FUZZ_ADMIN_ID)
    return path_user_id(case) in protected


def sign(case: Any) -> None:
    """Sign a delivery of valid shape as the provider would (amount as written in the JSON), in
    the contract's scheme: the generated Standard Webhooks headers go (any of them makes a
    delivery one of that scheme, whose random signature would never hold).

    JSON Schema calls 1.0 an integer, and schemathesis sends ids so on purpose; the contract
    refuses them (an id is written without a fraction: the document says so in words, the only
    way it can), so whole floats are written as the integers they are before signing.
    """
    body = case.body
    case.headers = {k: v for k, v in (case.headers or {}).items() if not k.lower().startswith("webhook-")}
    for name in ("user_id", "account_id"):
        if isinstance(body[name], float):
            body[name] = int(body[name])
    # A random user id is almost never a user: half the deliveries go to the seeded user instead,
    # so that accounts get opened and credited (or refused as another user's), not only 404s.
    if body["user_id"] % 2 == 0:
        body["user_id"] = FUZZ_USER_ID
    amount = body["amount"]
    amount_text = amount if isinstance(amount, str) else json.dumps(amount)
    signed = signatures.payload(
        str(body["account_id"]), amount_text, body["transaction_id"], str(body["user_id"])
    )
    body["signature"] = signatures.sign(signed, TEST_WEBHOOK_SECRET)


def make_email_new(body: dict[str, Any]) -> None:
    """Make half the valid emails new: the generator repeats short ones (0@0.0), and an email
    taken by an earlier example is refused (409), which would leave creation itself unfuzzed."""
    email = body["email"]
    if zlib.crc32(email.encode()) % 2 == 0 and len(email) + 32 <= bodies.EMAIL_LENGTH_MAX:
        body["email"] = uuid.uuid4().hex + email


@dataclass
class Answers:
    """The statuses one operation answered, checked once all its examples have run."""

    operation: Any = None
    statuses: Counter[int] = field(default_factory=Counter)


@pytest.fixture
def answers() -> Iterator[Answers]:
    answers = Answers()
    yield answers
    # Not only refusals: the tokens worked, and valid data went through (a path id is random,
    # so updates and deletions may well find no user).
    if answers.operation is not None and "{" not in answers.operation.path:
        assert any(200 <= status < 300 for status in answers.statuses), answers
    if answers.operation is not None and answers.operation.path == "/webhook/payment":
        assert answers.statuses[201] > 0, f"no delivery was credited: {answers}"


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
def test_every_operation_keeps_the_contract(
    case: Any, live_server: LiveServer, tokens: dict[str, str], answers: Answers
) -> None:
    hypothesis.assume(not targets_a_fixture(case))
    is_positive = case.meta.generation.mode.is_positive
    if case.operation.path == "/webhook/payment" and is_positive:
        sign(case)
    if case.operation.path == "/transfers" and is_positive and isinstance(case.body, dict):
        # Random ids are almost never the caller's and another user's accounts, and the generator
        # repeats keys: valid transfers go from the seeded user's funded account to the admin's,
        # each under a new key (the negative cases fuzz the refusals).
        case.body["from_account_id"], case.body["to_account_id"] = (
            FUZZ_SOURCE_ACCOUNT,
            FUZZ_DESTINATION_ACCOUNT,
        )
        case.headers = {**(case.headers or {}), "Idempotency-Key": f"fuzz-{uuid.uuid4()}"}
    if is_positive and isinstance(case.body, dict) and "email" in case.body:
        make_email_new(case.body)
    if is_positive and int(path_user_id(case) or 1) % 2 == 0:
        # A random id is almost never a user: half the valid updates and deletions get a fresh
        # user to act on, so that their success path is fuzzed too.
        case.path_parameters["user_id"] = live_server.new_user_id()
    response = case.call(base_url=live_server.url)
    answers.operation = case.operation
    answers.statuses[response.status_code] += 1
    refused_by_rule = (case.operation.path, response.status_code) in RULE_REFUSALS
    case.validate_response(
        response,
        excluded_checks=[positive_data_acceptance] if refused_by_rule else None,
        transport_kwargs={"base_url": live_server.url},
    )


def test_the_server_serves_this_document(live_server: LiveServer) -> None:
    served = httpx.get(f"{live_server.url}/openapi.json")
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("application/json")
    assert served.json() == openapi.document(ROUTES)
