"""The request bodies' schemas in the OpenAPI document say what the parser takes: every sample
here is accepted by both or refused by both, so a client that validates against the document
never sends what the service refuses on a field's form, and never holds back what it takes."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from ledger import errors, money, signatures
from ledger.http import bodies
from ledger.http.bodies import BIGINT_MAX

REGISTRATION = {"email": "a@example.com", "full_name": "A", "password": "123456"}
# (body, a valid instance, changes to it that one rule or another may refuse)
SAMPLES: list[tuple[bodies.Body, dict[str, Any], list[dict[str, Any]]]] = [
    (
        bodies.REGISTRATION,
        REGISTRATION,
        [
            {"full_name": ""},
            {"full_name": "n" * bodies.FULL_NAME_LENGTH_MAX},
            {"full_name": "n" * (bodies.FULL_NAME_LENGTH_MAX + 1)},
            {"full_name": "   "},
            {"full_name": "A\u0000B"},
            {"full_name": 5},
            {"is_admin": False},
            {"is_admin": True},
            {"is_auditor": True},
            {"is_admin": "false"},
            {"email": "a" * (bodies.EMAIL_LENGTH_MAX + 1)},
            {"password": ""},
        ],
    ),
    (bodies.NEW_USER, REGISTRATION, [{"is_admin": True}, {"is_auditor": True}, {"is_admin": 1}]),
    (
        bodies.REVERSAL,
        {"amount": "1.00", "reason": "refund"},
        [
            {"reason": ""},
            {"reason": "   "},
            {"reason": "line\nbreak"},
            {"reason": "r" * bodies.REASON_LENGTH_MAX},
            {"reason": "r" * (bodies.REASON_LENGTH_MAX + 1)},
        ],
    ),
    (
        # Ids; the amount's value rules come after the body is read (ledger.money), so an amount
        # is not among these samples.
        bodies.TRANSFER,
        {"from_account_id": 1, "to_account_id": 2, "amount": "1.00"},
        [
            {"from_account_id": 0},
            {"from_account_id": BIGINT_MAX},
            {"to_account_id": BIGINT_MAX + 1},
            {"to_account_id": "2"},
            {"to_account_id": True},
            {"to_account_id": None},
        ],
    ),
    (bodies.USER_CHANGES, {"full_name": "B"}, [{"full_name": ""}, {"is_admin": True}]),
    (
        bodies.LOGIN,
        {"email": "a@example.com", "password": "x"},
        [{"email": ""}, {"email": "e" * (bodies.EMAIL_LENGTH_MAX + 1)}, {"password": 5}],
    ),
]
# Bodies that lack what they require, or hold nothing of what they take.
INCOMPLETE = [
    (bodies.TRANSFER, {"from_account_id": 1, "amount": "1.00"}),
    (bodies.REVERSAL, {"reason": "refund"}),
    (bodies.REGISTRATION, {"email": "a@example.com", "password": "123456"}),
    (bodies.USER_CHANGES, {}),
    (bodies.USER_CHANGES, {"unknown": 1}),
]
# Bodies that are not objects at all.
NOT_OBJECTS: list[Any] = [[], "text", 1, None]
CASES = (
    [
        pytest.param(body, {**valid, **change}, id=f"{body.name}-{json.dumps(change)[:40]}")
        for body, valid, changes in SAMPLES
        for change in [{}, *changes]
    ]
    + [
        pytest.param(body, instance, id=f"{body.name}-incomplete-{sorted(instance)}")
        for body, instance in INCOMPLETE
    ]
    + [
        pytest.param(body, instance, id=f"{body.name}-not-an-object-{json.dumps(instance)}")
        for body in bodies.REQUEST_BODIES
        for instance in NOT_OBJECTS
    ]
)


def parser_takes(body: bodies.Body, instance: Any) -> bool:
    try:
        body.read(json.dumps(instance).encode())
    except errors.LedgerError:
        return False
    return True


@pytest.mark.parametrize(("body", "instance"), CASES)
def test_the_document_and_the_parser_agree(body: bodies.Body, instance: Any) -> None:
    schema_takes = Draft202012Validator(body.schema()).is_valid(instance)
    assert schema_takes == parser_takes(body, instance), (schema_takes, instance)


def test_every_example_a_field_gives_is_in_the_document() -> None:
    shown = 0
    for body in bodies.REQUEST_BODIES:
        for name, field in body.fields.items():
            examples = list(getattr(field, "examples", ()))
            if examples:
                assert body.schema()["properties"][name]["examples"] == examples, (body.name, name)
                assert all(parser_takes(body, {**REGISTRATION, name: example}) for example in examples)
                shown += 1
    assert shown >= 3  # email, full name and password, in each body that has them


def test_every_description_a_field_gives_is_in_the_document() -> None:
    described = [
        (body, name, field.description)
        for body in bodies.REQUEST_BODIES
        for name, field in body.fields.items()
        if getattr(field, "description", None)
    ]
    assert described
    for body, name, description in described:
        # Some fields add what their form implies (an id: no fraction) after their own words.
        assert body.schema()["properties"][name]["description"].startswith(description), (body.name, name)


# An amount's value, written plainly with at most 2 places: the rules the document states and the
# service applies (ledger.money) after the body is read. Written with 3 places or more ("1.500") or
# with an exponent, a number the schema takes is still refused: the description says so in words,
# as JSON Schema cannot speak of how a number is written.
AMOUNT_NUMBERS = ["0.01", "0.1", "1", "100.5", "999999999999.99", "1000000000000", "0", "-1", "-0.01",
                  "0.009", "12.345", "1000000000000.01", "1000000000001"]  # fmt: skip
AMOUNT_STRINGS = ["0.01", "0.1", "0.10", "1", "1.5", "100.50", "999999999999.99", "1000000000000",
                  "1000000000000.0", "1000000000000.00", "0", "0.0", "0.00", "0.001", "01", "00.01",
                  "1.", ".5", "+1", "-1", "1e2", " 1", "1 ", "1.500", "1000000000000.01",
                  "1000000000000.000", "1000000000001", "10000000000000", "9" * 13, "1,5", "x"]  # fmt: skip


def exact(value: object) -> Any:
    """The value as JSON reads it with no float: numbers with a fraction become Decimals, so that
    multipleOf 0.01 is judged exactly (0.07 / 0.01 is not 7 in binary floating point)."""
    return json.loads(json.dumps(value), parse_float=Decimal)


def service_takes_amount(amount_json: str) -> bool:
    try:
        value = bodies.json_object(b'{"amount": ' + amount_json.encode() + b"}")["amount"]
        text, is_string = bodies.Amount().read("amount", value)
        money.check_amount(text, is_string)
    except errors.LedgerError:
        return False
    return True


@pytest.mark.parametrize(
    "amount_json", [*AMOUNT_NUMBERS, *(json.dumps(text) for text in AMOUNT_STRINGS), "true", "null", "[1]"]
)
def test_the_document_and_the_service_agree_on_an_amount_s_value(amount_json: str) -> None:
    schema = exact(bodies.Amount().schema())
    schema_takes = Draft202012Validator(schema).is_valid(json.loads(amount_json, parse_float=Decimal))
    assert schema_takes == service_takes_amount(amount_json), amount_json


def test_the_document_s_signature_is_the_form_the_signature_check_can_accept() -> None:
    secret = b"s3cret"
    delivery = {"transaction_id": "t-1", "user_id": 1, "account_id": 2, "amount": "1.00"}
    good = signatures.sign(signatures.payload("2", "1.00", "t-1", "1"), secret)
    signature_schema = Draft202012Validator(bodies.DELIVERY.schema())
    candidates = [good, good.upper(), good[:-1], good + "0", "g" + good[1:], " " + good[1:], "", 7]
    for signature in candidates:
        schema_takes = signature_schema.is_valid({**delivery, "signature": signature})
        check_accepts = isinstance(signature, str) and signatures.is_valid(
            signatures.payload("2", "1.00", "t-1", "1"), signature, [secret]
        )
        assert schema_takes == check_accepts, signature


def test_every_body_and_every_field_with_a_rule_is_described_in_the_document() -> None:
    for body in bodies.REQUEST_BODIES:
        schema = body.schema()
        assert schema.get("description") == body.description, body.name
        for name, field in body.fields.items():
            stated = schema["properties"][name].get("description")
            if isinstance(field, bodies.Flag) and not field.description and not field.rule:
                assert stated is None, (body.name, name)  # nothing to say: no empty words
            elif isinstance(field, bodies.Flag) and not field.description:
                assert stated == field.rule.capitalize() + ".", (body.name, name)  # the refusal's rule
            elif isinstance(field, bodies.Amount):
                # The value rules that the schema alone cannot state exactly, said in words.
                assert stated is not None and "10^12" in stated and "2 decimal places" in stated, body.name
            elif getattr(field, "description", None):
                assert stated, (body.name, name)
    assert any(body.description for body in bodies.REQUEST_BODIES)
