"""Request parsing: bytes and query strings in, validated values out, or a 4xx LedgerError.

JSON is read without passing through a float: a number with a fraction or an exponent is kept
as the text the sender wrote (NumberLiteral), which the webhook signature needs anyway.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import falcon

from ledger import errors, signatures
from ledger.audit import feed
from ledger.audit.feed import Cursor
from ledger.commands import NewUser, UserChanges
from ledger.events import PaymentReceived
from ledger.projections.past import Cut

BODY_SIZE_MAX = 64 * 1024
BIGINT_MAX = 2**63 - 1
AMOUNT_MAX = Decimal(10) ** 12
PAGE_SIZE_DEFAULT = 100
PAGE_SIZE_MAX = 1000
EMAIL_LENGTH_MAX = 254
PASSWORD_LENGTH_MIN, PASSWORD_LENGTH_MAX = 6, 128
FULL_NAME_LENGTH_MIN, FULL_NAME_LENGTH_MAX = 1, 200
TRANSACTION_ID_LENGTH_MAX = 128
WEBHOOK_ID_LENGTH_MAX = 256

# What a decimal string amount may look like (sign and size are amount rules, checked later).
DECIMAL_STRING = re.compile(r"[-+]?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")
# A valid string amount is also written plainly, as the contract writes it ("100.50"): no sign,
# no exponent, no leading zero, which is what the OpenAPI document's pattern can say.
PLAIN_DECIMAL_STRING = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]+)?")
AMOUNT_TEXT_LENGTH_MAX = 40  # beyond this no amount can be valid; keeps Decimal away from huge exponents
INTEGER_STRING = re.compile(r"[0-9]{1,19}")

# Text rules as regular expressions that Python, JSON Schema (ECMA-262) and Rust read alike, so
# that the OpenAPI document (ledger.http.openapi) states them as `pattern`s, word for word.
# No engine's own \s or Unicode classes: they differ between engines. Control characters are
# Unicode's Cc (C0, DEL, C1): newlines have no place in a field, and NUL cannot be stored.
CONTROL_CHARACTERS = r"\x00-\x1f\x7f-\x9f"
# What str.isspace() calls a space, less the control characters above.
SPACES = r" \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
TEXT_PATTERN = rf"^[^{CONTROL_CHARACTERS}]*$"
NAME_PATTERN = rf"^[^{CONTROL_CHARACTERS}]*[^{CONTROL_CHARACTERS}{SPACES}][^{CONTROL_CHARACTERS}]*$"
# One @, something before it, a dot inside the domain, no spaces.
_EMAIL_CHARACTER = rf"[^@.{CONTROL_CHARACTERS}{SPACES}]"
EMAIL_PATTERN = rf"^[^@{CONTROL_CHARACTERS}{SPACES}]+@{_EMAIL_CHARACTER}+(\.{_EMAIL_CHARACTER}+)+$"
TEXT, NAME, EMAIL = (re.compile(pattern) for pattern in (TEXT_PATTERN, NAME_PATTERN, EMAIL_PATTERN))
USER_FIELDS = frozenset({"email", "full_name", "password", "is_admin", "is_auditor"})


@dataclass(frozen=True, slots=True)
class NumberLiteral:
    """A JSON number with a fraction or an exponent, exactly as written (never a float).

    Not a str subclass on purpose: a number must never pass where a string is required.
    """

    text: str


def _refuse_constant(name: str) -> Any:
    raise errors.MalformedRequestError(f"{name} is not a number this service accepts.")


async def read_body(req: falcon.asgi.Request) -> bytes:
    """Return the request body; raise BodyTooLargeError past BODY_SIZE_MAX, before reading it all."""
    if req.content_length is not None and req.content_length > BODY_SIZE_MAX:
        raise errors.BodyTooLargeError(f"The body may be at most {BODY_SIZE_MAX} bytes.")
    raw = await req.stream.read(BODY_SIZE_MAX + 1)
    if len(raw) > BODY_SIZE_MAX:
        raise errors.BodyTooLargeError(f"The body may be at most {BODY_SIZE_MAX} bytes.")
    return raw


# Built once: json.loads(raw, parse_float=...) builds a decoder and its scanner on every call,
# 40% of the time it takes to read a webhook body.
JSON_DECODER = json.JSONDecoder(parse_float=NumberLiteral, parse_constant=_refuse_constant)


def json_object(raw: bytes) -> dict[str, Any]:
    """Return raw parsed as a JSON object; raise MalformedRequestError."""
    try:
        # Decoded as json.loads decodes bytes: UTF-8 (or -16, -32, told by the first bytes),
        # lone surrogates let through, to be refused below.
        body = JSON_DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except (ValueError, RecursionError) as error:  # JSONDecodeError and UnicodeDecodeError included
        raise errors.MalformedRequestError("The body is not valid JSON.") from error
    if not isinstance(body, dict):
        raise errors.MalformedRequestError()
    # An ASCII body without a \u escape can only hold ASCII strings: nothing to check. Any
    # other can hold a lone surrogate, escaped or as raw bytes (json.loads decodes bytes with
    # surrogatepass).
    if not (raw.isascii() and b"\\u" not in raw) and not _is_encodable(body):
        raise errors.MalformedRequestError("The body holds text that is not valid Unicode.")
    return body


def _is_encodable(body: dict[str, Any]) -> bool:
    """Return whether every string in body is valid Unicode (a JSON escape can spell a lone
    surrogate, which no database, hash or password function can take)."""
    try:
        json.dumps(body, ensure_ascii=False, default=lambda number: number.text).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# Field rules -------------------------------------------------------------------------------


def _invalid(name: str, rule: str) -> errors.InvalidFieldError:
    return errors.InvalidFieldError(f"{name}: {rule}", field=name)


def _string(body: dict[str, Any], name: str, length_min: int, length_max: int) -> str:
    value = body.get(name)
    if type(value) is not str:
        raise _invalid(name, "a string is required")
    if not length_min <= len(value) <= length_max:
        raise _invalid(name, f"must be {length_min} to {length_max} characters")
    return value


def _email(body: dict[str, Any]) -> str:
    email = _string(body, "email", 3, EMAIL_LENGTH_MAX)
    if not EMAIL.fullmatch(email):
        raise _invalid("email", "must look like an email address")
    return email


def _password(body: dict[str, Any]) -> str:
    return _string(body, "password", PASSWORD_LENGTH_MIN, PASSWORD_LENGTH_MAX)


def _full_name(body: dict[str, Any]) -> str:
    full_name = _string(body, "full_name", FULL_NAME_LENGTH_MIN, FULL_NAME_LENGTH_MAX)
    if not TEXT.fullmatch(full_name):
        raise _invalid("full_name", "must not hold control characters")
    if not NAME.fullmatch(full_name):
        raise _invalid("full_name", "must not be blank")
    return full_name


def _boolean(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if type(value) is not bool:
        raise _invalid(name, "true or false is required")
    return value


def _id(body: dict[str, Any], name: str) -> int:
    value = body.get(name)
    if type(value) is not int or not 1 <= value <= BIGINT_MAX:  # a JSON true is not an id
        raise _invalid(name, f"an integer from 1 to {BIGINT_MAX} is required")
    return value


# Bodies ------------------------------------------------------------------------------------


def login(raw: bytes) -> tuple[str, str]:
    """Return (email, password) of a login body."""
    body = json_object(raw)
    email, password = body.get("email"), body.get("password")
    if type(email) is not str or type(password) is not str:
        raise _invalid("email" if type(email) is not str else "password", "a string is required")
    # What no account can have is refused here, before argon2 spends time on it (and NUL,
    # which PostgreSQL text cannot hold, never reaches the database).
    if len(email) > EMAIL_LENGTH_MAX or len(password) > PASSWORD_LENGTH_MAX or not TEXT.fullmatch(email):
        raise errors.InvalidCredentialsError()
    return email, password


def registration(raw: bytes) -> NewUser:
    """Return the user a /register body asks for: never an admin or an auditor (the roles may
    only be sent as false)."""
    body = json_object(raw)
    for role in ("is_admin", "is_auditor"):
        if role in body and _boolean(body, role):
            raise _invalid(role, "registration never grants a role")
    return NewUser(email=_email(body), full_name=_full_name(body), password=_password(body))


def new_user(raw: bytes) -> NewUser:
    """Return the user an admin's create body asks for."""
    body = json_object(raw)
    is_admin = _boolean(body, "is_admin") if "is_admin" in body else False
    is_auditor = _boolean(body, "is_auditor") if "is_auditor" in body else False
    if is_admin and is_auditor:
        raise errors.RoleConflictError(field="is_auditor")
    return NewUser(_email(body), _full_name(body), _password(body), is_admin, is_auditor)


def user_changes(raw: bytes) -> UserChanges:
    """Return the changes of an update body: a non-empty subset of the user fields.

    Unknown fields are ignored, as in every body (clients may send more than we read).
    """
    body = json_object(raw)
    if not USER_FIELDS & body.keys():
        raise errors.InvalidFieldError(
            "At least one of email, full_name, password, is_admin, is_auditor is required."
        )
    return UserChanges(
        email=_email(body) if "email" in body else None,
        full_name=_full_name(body) if "full_name" in body else None,
        password=_password(body) if "password" in body else None,
        is_admin=_boolean(body, "is_admin") if "is_admin" in body else None,
        is_auditor=_boolean(body, "is_auditor") if "is_auditor" in body else None,
    )


@dataclass(frozen=True)
class StandardWebhookHeaders:
    """The three headers of a Standard Webhooks delivery, as sent (None: absent)."""

    webhook_id: str | None
    timestamp: str | None
    signature: str | None

    @classmethod
    def of(cls, get_header: Callable[[str], str | None]) -> StandardWebhookHeaders | None:
        """Return the headers that get_header finds, or None when the delivery sends none of
        them (the contract's scheme)."""
        headers = cls(
            get_header("webhook-id"), get_header("webhook-timestamp"), get_header("webhook-signature")
        )
        return None if headers == NO_STANDARD_HEADERS else headers


NO_STANDARD_HEADERS = StandardWebhookHeaders(None, None, None)


def payment_delivery(
    raw: bytes, standard_headers: StandardWebhookHeaders | None, webhooks: signatures.Webhooks
) -> PaymentReceived:
    """Return a signed delivery, checked in the contract's order.

    Shape and types (MalformedRequestError, InvalidFieldError), then the signature of the
    delivery's scheme, Standard Webhooks when it sends their headers (InvalidSignatureError),
    then the amount rules (InvalidAmountError).
    """
    body = json_object(raw)
    transaction_id = _string(body, "transaction_id", 1, TRANSACTION_ID_LENGTH_MAX)
    if not TEXT.fullmatch(transaction_id):
        raise _invalid("transaction_id", "must not hold control characters")
    user_id = _id(body, "user_id")
    account_id = _id(body, "account_id")
    amount_text = _amount_text(body.get("amount"))
    if standard_headers is None:
        delivery = _signature_field_delivery(body, transaction_id, user_id, account_id, amount_text, webhooks)
    else:
        delivery = _standard_delivery(
            raw, standard_headers, transaction_id, user_id, account_id, amount_text, webhooks
        )
    _check_amount(body["amount"], amount_text)
    return delivery


def _signature_field_delivery(
    body: dict[str, Any],
    transaction_id: str,
    user_id: int,
    account_id: int,
    amount_text: str,
    webhooks: signatures.Webhooks,
) -> PaymentReceived:
    signature = body.get("signature")
    if type(signature) is not str:
        raise _invalid("signature", "a hex string is required")
    if signatures.SIGNATURE_FIELD not in webhooks.schemes:
        raise errors.InvalidSignatureError(
            "Deliveries signed in the body's signature field are not accepted here: sign them with "
            "Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature)."
        )
    signed = signatures.payload(str(account_id), amount_text, transaction_id, str(user_id))
    if not signatures.is_valid(signed, signature, webhooks.secrets):
        raise errors.InvalidSignatureError()
    return PaymentReceived(transaction_id, user_id, account_id, amount_text, signature=signature)


def _standard_delivery(
    raw: bytes,
    headers: StandardWebhookHeaders,
    transaction_id: str,
    user_id: int,
    account_id: int,
    amount_text: str,
    webhooks: signatures.Webhooks,
) -> PaymentReceived:
    if signatures.STANDARD_WEBHOOKS not in webhooks.schemes:
        raise errors.InvalidSignatureError("Standard Webhooks deliveries are not accepted here.")
    for name, value in (
        ("webhook-id", headers.webhook_id),
        ("webhook-timestamp", headers.timestamp),
        ("webhook-signature", headers.signature),
    ):
        if not value:
            raise errors.InvalidSignatureError(f"The {name} header is missing.")
    assert headers.webhook_id and headers.timestamp and headers.signature
    if len(headers.webhook_id) > WEBHOOK_ID_LENGTH_MAX or not TEXT.fullmatch(headers.webhook_id):
        raise errors.InvalidSignatureError(
            f"webhook-id must be 1 to {WEBHOOK_ID_LENGTH_MAX} printable characters."
        )
    if not INTEGER_STRING.fullmatch(headers.timestamp) or (
        abs(int(headers.timestamp) - time.time()) > signatures.TIMESTAMP_TOLERANCE_S
    ):
        raise errors.InvalidSignatureError(
            "webhook-timestamp must be the time of signing in seconds since 1970, within "
            f"{signatures.TIMESTAMP_TOLERANCE_S // 60} minutes of now."
        )
    if not signatures.standard_is_valid(
        headers.webhook_id, headers.timestamp, raw, headers.signature, webhooks.standard_keys
    ):
        raise errors.InvalidSignatureError()
    try:
        body_text = raw.decode("utf-8")
    except UnicodeDecodeError:  # the scheme signs UTF-8 text
        raise errors.MalformedRequestError("A Standard Webhooks body is UTF-8.") from None
    return PaymentReceived(
        transaction_id,
        user_id,
        account_id,
        amount_text,
        webhook_id=headers.webhook_id,
        webhook_timestamp=headers.timestamp,
        webhook_signature=headers.signature,
        body=body_text,
    )


def _check_amount(amount: object, amount_text: str) -> None:
    """Refuse (InvalidAmountError) an amount that is not plain, positive, at most AMOUNT_MAX and
    in whole cents."""
    if "e" in amount_text or "E" in amount_text:
        # An exponent is how "250" and a transaction id starting with "e9" became 250e9:
        # amounts are written plainly, as numbers and as strings.
        raise errors.InvalidAmountError(
            "An amount is written in plain decimal notation, such as 100.50: no exponent.", field="amount"
        )
    if not _is_valid_amount(amount_text):
        raise errors.InvalidAmountError(field="amount")
    if type(amount) is str and not PLAIN_DECIMAL_STRING.fullmatch(amount_text):
        raise errors.InvalidAmountError(
            'A string amount is a plain decimal such as "100.50": no sign, exponent or leading zero.',
            field="amount",
        )


def _amount_text(amount: object) -> str:
    """Return the amount as the sender wrote it: a JSON number or a decimal string."""
    if isinstance(amount, NumberLiteral):
        return amount.text
    if type(amount) is int:
        return str(amount)
    if type(amount) is str and DECIMAL_STRING.fullmatch(amount):
        return amount
    raise _invalid("amount", "a number or a decimal string is required")


def _is_valid_amount(amount_text: str) -> bool:
    """Return whether the amount is above 0, at most AMOUNT_MAX, with at most 2 decimal places."""
    if len(amount_text) > AMOUNT_TEXT_LENGTH_MAX:
        return False
    try:
        amount = Decimal(amount_text)
    except InvalidOperation:  # an exponent beyond what Decimal takes
        return False
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int)  # finite: the grammar above admits no NaN or Infinity
    return 0 < amount <= AMOUNT_MAX and exponent >= -2


# Query strings and paths -------------------------------------------------------------------


def page(limit: str | None, after: str | None) -> tuple[int, int | None]:
    """Return (page size, id to continue after or None) of ?limit=&after=."""
    size = PAGE_SIZE_DEFAULT
    if limit is not None:
        if not INTEGER_STRING.fullmatch(limit) or not 1 <= int(limit) <= PAGE_SIZE_MAX:
            raise errors.InvalidQueryError(f"limit must be an integer from 1 to {PAGE_SIZE_MAX}.")
        size = int(limit)
    if after is None:
        return size, None
    if not INTEGER_STRING.fullmatch(after) or int(after) > BIGINT_MAX:
        raise errors.InvalidQueryError(f"after must be an integer from 0 to {BIGINT_MAX}.")
    return size, int(after)


def cursor(text: str | None) -> Cursor:
    """Return the feed cursor of ?after= (the start when absent)."""
    if text is None:
        return feed.START
    at = Cursor.parse(text)
    if at is None:
        raise errors.InvalidQueryError(
            'after must be a cursor from the feed ("<transaction>-<position>") or 0.'
        )
    return at


def as_of(text: str | None) -> Cut | None:
    """Return the cut of ?as_of=: a log position, or an ISO-8601 time with a time zone."""
    if text is None:
        return None
    if INTEGER_STRING.fullmatch(text) and int(text) <= BIGINT_MAX:
        return Cut(position=int(text))
    try:
        time = datetime.fromisoformat(text)
    except ValueError:
        time = None
    if time is None or time.tzinfo is None:
        raise errors.InvalidQueryError(
            "as_of must be a log position or an ISO-8601 time with a time zone (2026-11-26T12:00:00Z)."
        )
    return Cut(time=time)


def query_id(name: str, text: str) -> int:
    """Return the id in a query parameter; raise InvalidQueryError."""
    if not INTEGER_STRING.fullmatch(text) or not 1 <= int(text) <= BIGINT_MAX:
        raise errors.InvalidQueryError(f"{name} must be an integer from 1 to {BIGINT_MAX}.")
    return int(text)


def user_id(text: str) -> int:
    """Return the user id of a path; an id no user can have is a UserNotFoundError."""
    if not INTEGER_STRING.fullmatch(text) or not 1 <= int(text) <= BIGINT_MAX:
        raise errors.UserNotFoundError()
    return int(text)
