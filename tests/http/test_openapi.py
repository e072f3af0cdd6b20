"""The OpenAPI document: valid OpenAPI 3.1, every route and only those, and the same rules as
the service's own validation (ledger.http.parse) for every field it constrains."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import falcon.asgi
import falcon.inspect
import jsonschema_rs
import pytest
from falcon.testing import ASGIConductor
from hypothesis import given
from hypothesis import strategies as st
from openapi_spec_validator import validate

from ledger import errors, money, signatures
from ledger.http import bodies, openapi, parse
from ledger.http.errors import OUTAGES
from ledger.http.openapi import ACCESS_EXTENSION
from ledger.http.routes import ROUTES
from ledger.signatures import Webhooks
from tests.support import TEST_WEBHOOK_SECRET, Person, accepted_delivery, delivery_body, delivery_bytes

# Pages for people, not part of the API the document describes.
NOT_IN_THE_DOCUMENT = {"/docs", "/docs/docs.js"}
HTTP_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi.document(ROUTES)


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"].startswith("3.1.")


def served_routes(app: falcon.asgi.App) -> set[tuple[str, str]]:
    """Return (path template, method) of every route the app serves (falcon's public inspect)."""
    return {
        (route.path, method.method.lower())
        for route in falcon.inspect.inspect_routes(app)
        for method in route.methods
        if not method.internal and method.method in HTTP_METHODS
    }


def test_every_route_is_described_and_nothing_else(app: falcon.asgi.App, document: dict[str, Any]) -> None:
    described = {(path, method) for path, item in document["paths"].items() for method in item}
    assert {key for key in served_routes(app) if key[0] not in NOT_IN_THE_DOCUMENT} == described


async def test_every_operation_is_guarded_as_its_document_says(
    client: ASGIConductor, document: dict[str, Any], person: Person
) -> None:
    """What the document says of an operation's access is what the service enforces: no token is
    401 unless it is public, and a plain user's token is 403 for admins' and auditors' routes."""
    for path, item in document["paths"].items():
        concrete = path.replace("{user_id}", str(2**62))
        for method, operation in item.items():
            access = operation[ACCESS_EXTENSION]
            anonymous = await client.simulate_request(method.upper(), concrete, json={})
            assert (anonymous.status_code == 401) == (access != "public"), (
                path,
                method,
                anonymous.status_code,
            )
            if access in ("audit", "admin"):
                as_user = await client.simulate_request(
                    method.upper(), concrete, json={}, headers=person.headers
                )
                assert as_user.status_code == 403, (path, method, as_user.status_code)


def test_every_status_a_refusal_can_have_is_the_one_the_service_answers(document: dict[str, Any]) -> None:
    codes = {error.code: status for error, status in _statuses_of_codes()} | dict.fromkeys(OUTAGES, 503)
    for item in document["paths"].values():
        for operation in item.values():
            for status, response in operation["responses"].items():
                schema = response.get("content", {}).get("application/json", {}).get("schema", {})
                for code in schema.get("properties", {}).get("error", {}).get("enum", []):
                    assert codes[code] == int(status), code


def _statuses_of_codes() -> Iterator[tuple[type[errors.LedgerError], int]]:
    from ledger.http.errors import STATUS_OF

    yield from STATUS_OF.items()


async def test_the_served_document_is_this_document(app: falcon.asgi.App, document: dict[str, Any]) -> None:
    async with ASGIConductor(app) as client:
        result = await client.simulate_get("/openapi.json")
    assert result.status_code == 200
    assert result.json == document


# The service and the document agree ---------------------------------------------------------


def schema_of(document: dict[str, Any], name: str) -> jsonschema_rs.Draft202012Validator:
    """A validator of one component schema (JSON Schema's regex dialect, as schemathesis uses)."""
    return jsonschema_rs.Draft202012Validator(
        {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    )


def service_accepts(parse_body: Any, body: dict[str, Any]) -> bool:
    try:
        parse_body(json.dumps(body).encode())
    except errors.InvalidFieldError:
        return False
    return True


VALID_USER = {"email": "ada@example.com", "full_name": "Ada", "password": "s3cret!"}
AT_THE_LIMITS: list[tuple[str, object]] = [
    ("email", "a@b.c"),
    ("email", "x" * (bodies.EMAIL_LENGTH_MAX - 6) + "@ex.co"),
    ("email", "x" * (bodies.EMAIL_LENGTH_MAX - 5) + "@ex.co"),
    ("email", "a@b"),
    ("email", "a b@example.com"),
    ("email", "a\u3000b@example.com"),
    ("email", "a\x85b@example.com"),
    ("email", "ada@example.com\n"),
    ("email", "a@@example.com"),
    ("email", "\u202e@example.com"),
    ("full_name", "x" * bodies.FULL_NAME_LENGTH_MAX),
    ("full_name", "x" * (bodies.FULL_NAME_LENGTH_MAX + 1)),
    ("full_name", ""),
    ("full_name", " \u00a0\u2003 "),
    ("full_name", "Ada\n"),
    ("full_name", "Ada\x00"),
    ("full_name", "Ada\x9f"),
    ("full_name", "'; DROP TABLE events; --"),
    ("full_name", 5),
    ("password", "x" * bodies.PASSWORD_LENGTH_MIN),
    ("password", "x" * (bodies.PASSWORD_LENGTH_MIN - 1)),
    ("password", "x" * bodies.PASSWORD_LENGTH_MAX),
    ("password", "x" * (bodies.PASSWORD_LENGTH_MAX + 1)),
    ("password", "\x00\n\t whatever"),
    ("is_admin", True),
    ("is_admin", False),
    ("is_admin", "true"),
]


@pytest.mark.parametrize(("field", "value"), AT_THE_LIMITS)
def test_user_bodies_at_the_limits_get_the_same_answer(
    document: dict[str, Any], field: str, value: object
) -> None:
    body = {**VALID_USER, field: value}
    for name, parse_body in (("Registration", parse.registration), ("NewUser", parse.new_user)):
        assert schema_of(document, name).is_valid(body) == service_accepts(parse_body, body), (name, body)
    changes = {field: value}
    assert schema_of(document, "UserChanges").is_valid(changes) == service_accepts(
        parse.user_changes, changes
    )


@given(field=st.sampled_from(["email", "full_name", "password"]), value=st.text(max_size=260))
def test_any_text_gets_the_same_answer(document: dict[str, Any], field: str, value: str) -> None:
    body = {**VALID_USER, field: value}
    assert schema_of(document, "NewUser").is_valid(body) == service_accepts(parse.new_user, body)


@given(
    email=st.one_of(st.text(max_size=20), st.text(min_size=bodies.EMAIL_LENGTH_MAX - 2, max_size=260)),
    password=st.one_of(st.text(max_size=20), st.text(min_size=bodies.PASSWORD_LENGTH_MAX - 2, max_size=140)),
)
def test_logins_get_the_same_answer(document: dict[str, Any], email: str, password: str) -> None:
    body = {"email": email, "password": password}
    try:
        parse.login(json.dumps(body).encode())
    except (errors.InvalidFieldError, errors.InvalidCredentialsError):
        accepted = False
    else:
        accepted = True
    assert schema_of(document, "Login").is_valid(body) == accepted


def test_an_update_needs_a_known_field_in_both(document: dict[str, Any]) -> None:
    for body in ({}, {"nickname": "x"}, {"is_admin": False}):
        assert schema_of(document, "UserChanges").is_valid(body) == service_accepts(parse.user_changes, body)


def delivery_shape_accepted(raw: bytes) -> bool:
    """Whether a delivery gets past the shape and amount rules (the signature is good)."""
    try:
        accepted_delivery(raw, Webhooks(secrets=(TEST_WEBHOOK_SECRET,)))
    except (errors.InvalidFieldError, errors.InvalidAmountError):
        return False
    return True


CENT = Decimal("0.01")
two_places = st.decimals(min_value=-1, max_value=money.AMOUNT_MAX + 1, places=2)
three_places = st.decimals(min_value=0, max_value=100, places=3).filter(lambda d: d != d.quantize(CENT))
amounts_as_written = st.one_of(
    st.tuples(st.just("string"), st.one_of(two_places, three_places).map(str)),
    st.tuples(st.just("number"), st.one_of(two_places, three_places).map(str)),
    st.tuples(st.just("number"), st.integers(min_value=-1, max_value=int(money.AMOUNT_MAX) + 1).map(str)),
    st.tuples(
        st.just("string"),
        st.sampled_from(
            ["0", "0.00", "0.1", "1000000000000.00", "1000000000000.01", "x", "+5", "05", "1e2", "5.", " 5"]
        ),
    ),
    # Whatever the service reads as a decimal string, signs, exponents and leading zeros included.
    st.tuples(st.just("string"), st.from_regex(bodies.DECIMAL_STRING, fullmatch=True)),
)


def signed_delivery(
    transaction_id: str = "tx-1", user_id: int = 1, amount: tuple[str, str] = ("string", "5.00")
) -> bytes:
    """A delivery with a good signature; amount is (how it is written: string or number, its text)."""
    kind, text = amount
    signed = signatures.payload("1", text, transaction_id, str(user_id))
    body = {
        "transaction_id": transaction_id,
        "user_id": user_id,
        "account_id": 1,
        "amount": text,
        "signature": signatures.sign(signed, TEST_WEBHOOK_SECRET),
    }
    return delivery_bytes(body, amount_literal=text if kind == "number" else None)


def assert_same_answer(document: dict[str, Any], raw: bytes) -> None:
    assert schema_of(document, "Delivery").is_valid(json.loads(raw)) == delivery_shape_accepted(raw), raw


@given(transaction_id=st.text(max_size=bodies.TRANSACTION_ID_LENGTH_MAX + 2))
def test_transaction_ids_get_the_same_answer(document: dict[str, Any], transaction_id: str) -> None:
    assert_same_answer(document, signed_delivery(transaction_id=transaction_id))


@given(user_id=st.integers(min_value=-1, max_value=bodies.BIGINT_MAX + 1))
def test_ids_get_the_same_answer(document: dict[str, Any], user_id: int) -> None:
    assert_same_answer(document, signed_delivery(user_id=user_id))


@given(amount=amounts_as_written)
def test_amounts_get_the_same_answer(document: dict[str, Any], amount: tuple[str, str]) -> None:
    assert_same_answer(document, signed_delivery(amount=amount))


def test_what_json_schema_cannot_say_is_refused_by_the_service(document: dict[str, Any]) -> None:
    """The two known gaps, both stricter in the service than in the document: an amount written
    with more than 2 decimals (JSON Schema sees the value 1.5, not the text 1.500), and an id
    written with a fraction (JSON Schema calls 1.0 an integer)."""
    delivery = schema_of(document, "Delivery")
    raw = delivery_bytes(delivery_body(1, 1, "1.500"), amount_literal="1.500")  # signed as 1.500
    assert delivery.is_valid(json.loads(raw))
    with pytest.raises(errors.InvalidAmountError):
        accepted_delivery(raw, Webhooks(secrets=(TEST_WEBHOOK_SECRET,)))
    whole_float = {**delivery_body(1, 1, 100), "user_id": 1.0}
    assert delivery.is_valid(whole_float)
    with pytest.raises(errors.InvalidFieldError):
        accepted_delivery(json.dumps(whole_float).encode(), Webhooks(secrets=(TEST_WEBHOOK_SECRET,)))


@pytest.mark.parametrize(
    "text", ["0", "1", "100", str(parse.PAGE_SIZE_MAX), str(parse.PAGE_SIZE_MAX + 1), "-1", "x"]
)
def test_page_sizes_get_the_same_answer(document: dict[str, Any], text: str) -> None:
    limit = next(p for p in document["paths"]["/users"]["get"]["parameters"] if p["name"] == "limit")
    in_schema = text.lstrip("-").isdigit() and jsonschema_rs.Draft202012Validator(limit["schema"]).is_valid(
        int(text)
    )
    try:
        parse.page(text, None)
    except errors.InvalidQueryError:
        accepted = False
    else:
        accepted = True
    assert in_schema == accepted
    assert limit["schema"]["default"] == parse.PAGE_SIZE_DEFAULT
