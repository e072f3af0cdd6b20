"""Request parsing: exact numbers, the webhook's order of checks, the field rules."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from ledger import errors
from ledger.commands import NewUser
from ledger.http import bodies, parse
from ledger.http.bodies import BIGINT_MAX
from ledger.projections.past import Cut
from ledger.signatures import STANDARD_WEBHOOKS, Webhooks
from tests.support import TEST_WEBHOOK_SECRET, accepted_delivery, delivery_body, delivery_bytes

WEBHOOKS = Webhooks(secrets=(TEST_WEBHOOK_SECRET,))


def test_numbers_with_a_fraction_keep_their_text_and_never_become_floats() -> None:
    body = bodies.json_object(b'{"a": 1100.50, "b": 0.1, "c": 1e2, "d": 7}')
    literal = bodies.NumberLiteral
    assert body == {"a": literal("1100.50"), "b": literal("0.1"), "c": literal("1e2"), "d": 7}
    assert Decimal(body["b"].text) * 10 == 1


@pytest.mark.parametrize("field", ["transaction_id", "signature"])
def test_a_number_is_not_a_string(field: str) -> None:
    body = {**delivery_body(1, 1, 10), field: "@NUMBER@"}
    raw = json.dumps(body).replace('"@NUMBER@"', "1.5").encode()
    with pytest.raises(errors.InvalidFieldError):
        accepted_delivery(raw, WEBHOOKS)
    with pytest.raises(errors.InvalidFieldError):
        parse.registration(b'{"email": "a@example.com", "full_name": 1.5, "password": "123456"}')


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "abc\\ud83d"])
def test_lone_surrogates_are_malformed(escape: str) -> None:
    raw = ('{"email": "a@example.com", "full_name": "A", "password": "' + escape + 'xxxxxx"}').encode()
    with pytest.raises(errors.MalformedRequestError) as refused:
        parse.registration(raw)
    assert refused.value.message == "The body holds text that is not valid Unicode."


def test_lone_surrogates_written_as_raw_bytes_are_malformed() -> None:
    raw = b'{"email": "a@example.com", "full_name": "A\xed\xa0\x80", "password": "xxxxxx"}'
    with pytest.raises(errors.MalformedRequestError) as refused:
        parse.registration(raw)
    assert refused.value.message == "The body holds text that is not valid Unicode."


def test_text_beyond_ascii_is_taken_raw_or_escaped() -> None:
    for raw in ('{"full_name": "Zoë"}'.encode(), b'{"full_name": "Zo\\u00eb"}'):
        assert bodies.json_object(raw) == {"full_name": "Zo\u00eb"}


@pytest.mark.parametrize(
    "raw", [b"", b"not json", b"[1, 2]", b'"text"', b"\xff\xfe", b'{"a": NaN}', b'{"a": Infinity}']
)
def test_a_body_that_is_not_a_json_object_is_malformed(raw: bytes) -> None:
    with pytest.raises(errors.MalformedRequestError):
        bodies.json_object(raw)


@pytest.mark.parametrize("literal", ["100", "100.0", "100.50", "0.10"])
def test_a_delivery_is_verified_against_the_amount_as_written(literal: str) -> None:
    body = delivery_body(1, 1, literal)  # signed over the literal text
    raw = delivery_bytes(body, amount_literal=literal)
    delivery = accepted_delivery(raw, WEBHOOKS)
    assert delivery.amount == literal
    assert delivery.amount_value == Decimal(literal)


def test_a_string_amount_signs_as_its_content() -> None:
    body = delivery_body(1, 1, "100.50")
    delivery = accepted_delivery(json.dumps(body).encode(), WEBHOOKS)
    assert delivery.amount == "100.50"
    assert delivery.amount_value == Decimal("100.50")


def test_a_number_signed_as_another_spelling_is_refused() -> None:
    body = delivery_body(1, 1, "100")  # signed as 100
    with pytest.raises(errors.InvalidSignatureError):
        accepted_delivery(delivery_bytes(body, amount_literal="100.0"), WEBHOOKS)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"user_id": "1"}, errors.InvalidFieldError),
        ({"user_id": True}, errors.InvalidFieldError),
        ({"user_id": 0}, errors.InvalidFieldError),
        ({"account_id": 2**63}, errors.InvalidFieldError),
        ({"transaction_id": ""}, errors.InvalidFieldError),
        ({"transaction_id": "x" * 129}, errors.InvalidFieldError),
        ({"transaction_id": "tab\there"}, errors.InvalidFieldError),
        ({"amount": None}, errors.InvalidFieldError),
        ({"amount": "ten"}, errors.InvalidFieldError),
        ({"amount": [1]}, errors.InvalidFieldError),
        ({"signature": 5}, errors.InvalidFieldError),
        ({"signature": "00" * 32}, errors.InvalidSignatureError),
    ],
)
def test_shape_and_types_are_checked_before_the_signature(change: dict, error: type) -> None:
    body = {**delivery_body(1, 1, 10), **change}
    with pytest.raises(error):
        accepted_delivery(json.dumps(body).encode(), WEBHOOKS)


@pytest.mark.parametrize(
    ("change", "field", "rule"),
    [
        ({"signature": 5}, "signature", "a hex string is required"),
        ({"signature": None}, "signature", "a hex string is required"),  # no signature at all
        ({"user_id": "1"}, "user_id", f"an integer from 1 to {BIGINT_MAX} is required"),
        ({"amount": "ten"}, "amount", "a number or a decimal string is required"),
    ],
)
def test_a_delivery_field_of_the_wrong_type_is_refused_naming_it_and_its_rule(
    change: dict, field: str, rule: str
) -> None:
    body = {**delivery_body(1, 1, 10), **change}
    body = {name: value for name, value in body.items() if value is not None}
    with pytest.raises(errors.InvalidFieldError) as refused:
        parse.payment_delivery(json.dumps(body).encode(), {}.get)
    assert refused.value.message == f"{field}: {rule}"
    assert refused.value.details == {"field": field}


@pytest.mark.parametrize(
    "literal",
    [
        "0",
        "-5",
        "0.001",
        "1.005",
        "100.500",
        "1000000000000.01",
        "1e13",
        "1e2",  # an exponent is refused even where its value is fine: amounts are written plainly
        "1E+2",
        "1e9999999999999999999",
        "1e-9999999999999999999",
        "1" + "0" * 40,  # longer than any amount can be
        '"-5"',
        '"0.001"',
        '"1e13"',
        '"1e2"',  # a string amount is written plainly, as the OpenAPI document's pattern says
        '"+5"',
        '"05"',
    ],
)
def test_amount_rules_come_after_the_signature(literal: str) -> None:
    signed = delivery_body(1, 1, literal.strip('"'))  # a JSON string signs as its content
    with pytest.raises(errors.InvalidAmountError):
        accepted_delivery(delivery_bytes(signed, amount_literal=literal), WEBHOOKS)
    # With a wrong signature the same amount is refused for its signature first.
    forged = {**signed, "signature": "ab" * 32}
    with pytest.raises(errors.InvalidSignatureError):
        accepted_delivery(delivery_bytes(forged, amount_literal=literal), WEBHOOKS)


@pytest.mark.parametrize("literal", ["1e2", '"1e2"'])
def test_an_amount_with_an_exponent_is_told_so_naming_the_field(literal: str) -> None:
    signed = delivery_body(1, 1, literal.strip('"'))
    with pytest.raises(errors.InvalidAmountError, match="no exponent") as refused:
        accepted_delivery(delivery_bytes(signed, amount_literal=literal), WEBHOOKS)
    assert refused.value.details == {"field": "amount"}


def test_a_string_amount_with_leading_zeros_is_told_so_whatever_its_length() -> None:
    literal = '"' + "0" * 36 + '1.00"'  # 40 characters, the longest text read as a number
    signed = delivery_body(1, 1, literal.strip('"'))
    with pytest.raises(errors.InvalidAmountError) as refused:
        accepted_delivery(delivery_bytes(signed, amount_literal=literal), WEBHOOKS)
    assert refused.value.message == (
        'A string amount is a plain decimal such as "100.50": no sign, exponent or leading zero.'
    )
    assert refused.value.details == {"field": "amount"}


def test_with_the_signature_field_turned_off_a_delivery_signed_so_is_told_the_other_scheme() -> None:
    only_standard = Webhooks(secrets=(TEST_WEBHOOK_SECRET,), schemes=frozenset({STANDARD_WEBHOOKS}))
    with pytest.raises(errors.InvalidSignatureError, match="Standard Webhooks"):
        accepted_delivery(json.dumps(delivery_body(1, 1, "1.00")).encode(), only_standard)


def test_the_largest_amount_is_accepted() -> None:
    body = delivery_body(1, 1, "1000000000000.00")
    assert accepted_delivery(json.dumps(body).encode(), WEBHOOKS).amount_value == 10**12


@pytest.mark.parametrize(
    "email",
    [
        "plain",
        "two@@example.com",
        "a@b@example.com",
        "nodot@example",
        "sp ace@example.com",
        "a@.com",
        "@example.com",
        "x" * 250 + "@a.co",
    ],
)
def test_emails_must_look_like_emails(email: str) -> None:
    with pytest.raises(errors.InvalidFieldError):
        parse.registration(json.dumps({"email": email, "full_name": "A", "password": "123456"}).encode())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("password", "12345"),
        ("password", "x" * 129),
        ("full_name", ""),
        ("full_name", "   "),
        ("full_name", "x" * 201),
        ("full_name", 5),
        ("full_name", "nul\x00here"),
        ("full_name", "line\nbreak"),
        ("email", "nul\x00@example.com"),
    ],
)
def test_registration_field_limits(field: str, value: object) -> None:
    body = {"email": "a@example.com", "full_name": "A", "password": "123456", field: value}
    with pytest.raises(errors.InvalidFieldError):
        parse.registration(json.dumps(body).encode())


def test_invalid_json_is_told_so() -> None:
    with pytest.raises(errors.MalformedRequestError) as refused:
        parse.registration(b'{"email": "a@example.com",')
    assert refused.value.message == "The body is not valid JSON."


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("full_name", 5, "a string is required"),
        ("email", "plain", "must look like an email address"),
    ],
)
def test_a_registration_field_names_itself_and_the_rule_it_breaks(
    field: str, value: object, rule: str
) -> None:
    body = {"email": "a@example.com", "full_name": "A", "password": "123456", field: value}
    with pytest.raises(errors.InvalidFieldError) as refused:
        parse.registration(json.dumps(body).encode())
    assert refused.value.message == f"{field}: {rule}"
    assert refused.value.details == {"field": field}


def test_registration_never_makes_an_admin() -> None:
    body = {"email": "a@example.com", "full_name": "A", "password": "123456", "is_admin": True}
    with pytest.raises(errors.InvalidFieldError):
        parse.registration(json.dumps(body).encode())
    # is_admin false, and fields this service does not read, are fine.
    accepted = parse.registration(json.dumps({**body, "is_admin": False, "nickname": "ada"}).encode())
    assert accepted.is_admin is False


def test_an_update_needs_at_least_one_known_field() -> None:
    for raw in (b"{}", b'{"nickname": "x"}'):
        with pytest.raises(errors.InvalidFieldError) as refused:
            parse.user_changes(raw)
        assert refused.value.message == (
            "At least one of email, full_name, password, is_admin, is_auditor is required."
        )
    assert parse.user_changes(b'{"is_admin": false}').is_admin is False


@pytest.mark.parametrize(
    ("limit", "after"),
    [("0", None), ("1001", None), ("-1", None), ("x", None), (None, "-1"), (None, "9" * 30)],
)
def test_bad_page_parameters_are_refused(limit: str | None, after: str | None) -> None:
    with pytest.raises(errors.InvalidQueryError):
        parse.page(limit, after)


def test_page_defaults() -> None:
    assert parse.page(None, None) == (100, None)
    assert parse.page("1000", "5") == (1000, 5)


@pytest.mark.parametrize("text", ["0", "abc", "-1", str(2**63), "1" * 40])
def test_path_ids_no_user_can_have_are_not_found(text: str) -> None:
    with pytest.raises(errors.UserNotFoundError):
        parse.user_id(text)


@pytest.mark.parametrize(
    ("text", "is_an_id"), [("0", False), ("1", True), (str(BIGINT_MAX), True), (str(BIGINT_MAX + 1), False)]
)
def test_an_id_in_a_query_or_a_path_runs_from_1_to_the_largest_bigint(text: str, is_an_id: bool) -> None:
    if is_an_id:
        assert parse.query_id("user_id", text) == int(text)
        assert parse.user_id(text) == parse.account_id(text) == parse.payment_id(text) == int(text)
        return
    with pytest.raises(errors.InvalidQueryError, match=f"^user_id must be an integer from 1 to {BIGINT_MAX}"):
        parse.query_id("user_id", text)
    # In a path, an id that nothing can have is not found, as the thing it names.
    with pytest.raises(errors.UserNotFoundError):
        parse.user_id(text)
    with pytest.raises(errors.AccountNotFoundError):
        parse.account_id(text)
    with pytest.raises(errors.PaymentNotFoundError):
        parse.payment_id(text)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_json_constants_that_are_no_number_are_named_in_the_refusal(constant: str) -> None:
    with pytest.raises(
        errors.MalformedRequestError, match=f"^{constant} is not a number this service accepts"
    ):
        bodies.json_object(b'{"amount": ' + constant.encode() + b"}")


@pytest.mark.parametrize("amount", ["05.00", "+5.00", "-5.00"])
def test_a_transfer_or_a_reversal_takes_a_string_amount_only_in_plain_decimal(amount: str) -> None:
    body = json.dumps({"from_account_id": 1, "to_account_id": 2, "amount": amount}).encode()
    with pytest.raises(errors.InvalidAmountError):
        parse.transfer(body)
    with pytest.raises(errors.InvalidAmountError):
        parse.reversal(json.dumps({"amount": amount, "reason": "refund"}).encode(), 1)


def test_an_idempotency_key_is_1_to_255_printable_characters() -> None:
    for key in ("k", "k" * 255, "a key with spaces inside"):
        assert parse.idempotency_key(key) == key
    for key in (None, "", "k" * 256, " leading", "trailing ", "tab\there"):
        with pytest.raises(errors.InvalidIdempotencyKeyError):
            parse.idempotency_key(key)


def test_a_flag_is_true_or_false_and_a_registration_never_sets_a_role() -> None:
    body = {"email": "a@example.com", "full_name": "A", "password": "123456"}
    for value, rule in (("yes", "true or false is required"), (True, "registration never grants a role")):
        with pytest.raises(errors.InvalidFieldError) as refused:
            parse.registration(json.dumps({**body, "is_admin": value}).encode())
        assert refused.value.details == {"field": "is_admin"}
        assert refused.value.message.startswith(f"is_admin: {rule}")


def test_a_text_field_names_itself_in_its_refusal_and_a_login_tells_nothing() -> None:
    long_name = "n" * (bodies.FULL_NAME_LENGTH_MAX + 1)
    with pytest.raises(errors.InvalidFieldError) as refused:
        parse.registration(
            json.dumps({"email": "a@example.com", "full_name": long_name, "password": "123456"}).encode()
        )
    assert refused.value.details == {"field": "full_name"}
    rule = f"must be {bodies.FULL_NAME_LENGTH_MIN} to {bodies.FULL_NAME_LENGTH_MAX} characters"
    assert refused.value.message == f"full_name: {rule}"
    # A login whose email could never be one is refused as any wrong login is: nothing about why.
    long_email = "e" * bodies.EMAIL_LENGTH_MAX + "@example.com"
    with pytest.raises(errors.InvalidCredentialsError):
        parse.login(json.dumps({"email": long_email, "password": "123456"}).encode())


def test_page_cursor_and_as_of_take_their_largest_values_and_say_what_they_take() -> None:
    assert parse.page(None, str(BIGINT_MAX)) == (parse.PAGE_SIZE_DEFAULT, BIGINT_MAX)
    assert parse.as_of(str(BIGINT_MAX)) == Cut(position=BIGINT_MAX)
    refusals = [
        (lambda: parse.page("0", None), f"limit must be an integer from 1 to {parse.PAGE_SIZE_MAX}."),
        (lambda: parse.page(None, str(BIGINT_MAX + 1)), f"after must be an integer from 0 to {BIGINT_MAX}."),
        (
            lambda: parse.cursor("yesterday"),
            'after must be a cursor from the feed ("<transaction>-<position>") or 0.',
        ),
        (
            lambda: parse.as_of("yesterday"),
            "as_of must be a log position or an ISO-8601 time with a time zone",
        ),
    ]
    for call, message in refusals:
        with pytest.raises(errors.InvalidQueryError) as refused:
            call()
        assert refused.value.message.startswith(message), refused.value.message


def test_an_admin_creates_a_user_without_roles_unless_asked_and_never_both() -> None:
    body = {"email": "a@example.com", "full_name": "A", "password": "123456"}
    assert parse.new_user(json.dumps(body).encode()) == NewUser("a@example.com", "A", "123456", False, False)
    with pytest.raises(errors.RoleConflictError) as refused:
        parse.new_user(json.dumps({**body, "is_admin": True, "is_auditor": True}).encode())
    assert refused.value.details == {"field": "is_auditor"}
