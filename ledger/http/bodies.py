"""Request bodies, each declared once: the same declaration reads a body (or refuses it with a
4xx LedgerError) and writes its JSON Schema for /openapi.json, so the two cannot drift.

JSON is read without passing through a float: a number with a fraction or an exponent is kept
as the text the sender wrote (NumberLiteral), which the webhook signature needs anyway.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import falcon

from ledger import errors, money

Schema = dict[str, Any]

BODY_SIZE_MAX = 64 * 1024
BIGINT_MAX = 2**63 - 1
EMAIL_LENGTH_MAX = 254
PASSWORD_LENGTH_MIN, PASSWORD_LENGTH_MAX = 6, 128
FULL_NAME_LENGTH_MIN, FULL_NAME_LENGTH_MAX = 1, 200
TRANSACTION_ID_LENGTH_MAX = 128

# Text rules as regular expressions that Python, JSON Schema (ECMA-262) and Rust read alike, so
# that the document states them as `pattern`s, word for word. No engine's own \s or Unicode
# classes: they differ between engines. Control characters are Unicode's Cc (C0, DEL, C1):
# newlines have no place in a field, and NUL cannot be stored.
CONTROL_CHARACTERS = r"\x00-\x1f\x7f-\x9f"
# What str.isspace() calls a space, less the control characters above.
SPACES = r" \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
TEXT_PATTERN = rf"^[^{CONTROL_CHARACTERS}]*$"
NAME_PATTERN = rf"^[^{CONTROL_CHARACTERS}]*[^{CONTROL_CHARACTERS}{SPACES}][^{CONTROL_CHARACTERS}]*$"
# One @, something before it, a dot inside the domain, no spaces.
_EMAIL_CHARACTER = rf"[^@.{CONTROL_CHARACTERS}{SPACES}]"
EMAIL_PATTERN = rf"^[^@{CONTROL_CHARACTERS}{SPACES}]+@{_EMAIL_CHARACTER}+(\.{_EMAIL_CHARACTER}+)+$"
# What a decimal string amount may look like (sign and size are amount rules, checked later).
DECIMAL_STRING = re.compile(r"[-+]?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")
SIGNATURE_PATTERN = "^[0-9a-fA-F]{64}$"


# Reading JSON --------------------------------------------------------------------------------


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


# Built once: json.loads(raw, parse_float=...) builds a decoder and its scanner on every call.
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


# Fields: each reads a value (or refuses it) and describes it ---------------------------------


def invalid(name: str, rule: str) -> errors.InvalidFieldError:
    return errors.InvalidFieldError(f"{name}: {rule}", field=name)


class Field(Protocol):
    def read(self, name: str, value: object) -> Any: ...

    def schema(self) -> Schema: ...


@dataclass(frozen=True)
class Text:
    """A string of length_min to length_max characters matching each of patterns, in order
    (pattern, the rule it states): the last one implies the others, and is the one documented.

    refusal: the error for a string that breaks a rule, instead of InvalidFieldError (a login
    answers such a string like a wrong password).
    """

    length_min: int
    length_max: int
    patterns: tuple[tuple[str, str], ...] = ()
    description: str | None = None
    examples: tuple[str, ...] = ()
    refusal: type[errors.LedgerError] | None = None

    def read(self, name: str, value: object) -> str:
        if type(value) is not str:
            raise invalid(name, "a string is required")
        if not self.length_min <= len(value) <= self.length_max:
            raise self._broken(name, f"must be {self.length_min} to {self.length_max} characters")
        for pattern, rule in self._compiled:
            if not pattern.fullmatch(value):
                raise self._broken(name, rule)
        return value

    @cached_property
    def _compiled(self) -> tuple[tuple[re.Pattern[str], str], ...]:
        return tuple((re.compile(pattern), rule) for pattern, rule in self.patterns)

    def _broken(self, name: str, rule: str) -> errors.LedgerError:
        return invalid(name, rule) if self.refusal is None else self.refusal()

    def schema(self) -> Schema:
        schema: Schema = {"type": "string"}
        if self.length_min:
            schema["minLength"] = self.length_min
        schema["maxLength"] = self.length_max
        if self.patterns:
            schema["pattern"] = self.patterns[-1][0]
        return _described(schema, self.description, self.examples)


@dataclass(frozen=True)
class Flag:
    """true or false; const: the only value allowed, with the rule that says why."""

    const: bool | None = None
    rule: str = ""
    description: str | None = None

    def read(self, name: str, value: object) -> bool:
        if type(value) is not bool:
            raise invalid(name, "true or false is required")
        if self.const is not None and value != self.const:
            raise invalid(name, self.rule)
        return value

    def schema(self) -> Schema:
        schema: Schema = {"type": "boolean"}
        if self.const is not None:
            schema["const"] = self.const
        return _described(schema, self.description or (self.rule.capitalize() + "." if self.rule else None))


@dataclass(frozen=True)
class Id:
    """An id: an integer from 1 to 2^63-1, written without a fraction (a JSON true is not one)."""

    description: str

    def read(self, name: str, value: object) -> int:
        if type(value) is not int or not 1 <= value <= BIGINT_MAX:
            raise invalid(name, f"an integer from 1 to {BIGINT_MAX} is required")
        return value

    def schema(self) -> Schema:
        # JSON Schema calls 1.0 an integer too; the service does not.
        return {
            "type": "integer",
            "minimum": 1,
            "maximum": BIGINT_MAX,
            "description": self.description
            + " Written as an integer: no fraction, no exponent (1.0 is refused).",
        }


@dataclass(frozen=True)
class Amount:
    """An amount as written: a JSON number (its text) or a decimal string (its content). The
    rules on its value come after the signature (ledger.deliveries); the schema states them."""

    def read(self, name: str, value: object) -> tuple[str, bool]:
        """Return (the amount's text, whether it was sent as a string)."""
        if isinstance(value, NumberLiteral):
            return value.text, False
        if type(value) is int:
            return str(value), False
        if type(value) is str and DECIMAL_STRING.fullmatch(value):
            return value, True
        raise invalid(name, "a number or a decimal string is required")

    def schema(self) -> Schema:
        return {
            "anyOf": [
                {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": int(money.AMOUNT_MAX),
                    "multipleOf": 0.01,
                },
                {"type": "string", "pattern": amount_string_pattern()},
            ],
            "description": (
                "Above 0, at most 10^12, with at most 2 decimal places as written (1.500 is refused), "
                'in plain decimal notation: a JSON number, or a string such as "100.50" (no sign, '
                "exponent or leading zero)."
            ),
        }


def amount_string_pattern() -> str:
    """Return the decimal strings that are valid amounts: above 0, at most AMOUNT_MAX, 2 places."""
    digits = len(str(money.AMOUNT_MAX)) - 1
    assert 10**digits == money.AMOUNT_MAX, "the pattern below is written for a power of ten"
    assert money.AMOUNT_PLACES_MAX == 2, "the pattern below is written for 2 places"
    return (
        rf"^(0\.(0[1-9]|[1-9][0-9]?)|[1-9][0-9]{{0,{digits - 1}}}(\.[0-9]{{1,2}})?"
        rf"|1{'0' * digits}(\.00?)?)$"
    )


@dataclass(frozen=True)
class Signature:
    """The contract's hex signature: any string is read, a wrong one is refused by the
    signature check itself (400, after the shape), as the contract orders the checks."""

    description: str

    def read(self, name: str, value: object) -> str:
        if type(value) is not str:
            raise invalid(name, "a hex string is required")
        return value

    def schema(self) -> Schema:
        return {"type": "string", "pattern": SIGNATURE_PATTERN, "description": self.description}


def _described(schema: Schema, description: str | None, examples: tuple[str, ...] = ()) -> Schema:
    if description:
        schema["description"] = description
    if examples:
        schema["examples"] = list(examples)
    return schema


# Bodies ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Body:
    """A JSON object body: fields read in the order declared, required ones always, the others
    when sent. Unknown fields are ignored (clients may send more than we read)."""

    name: str  # its schema's name in the document
    fields: Mapping[str, Field]
    required: tuple[str, ...] = ()
    at_least_one: bool = False  # a non-empty subset of the fields
    description: str | None = None

    def read(self, raw: bytes) -> dict[str, Any]:
        """Return the declared fields the body holds, read; raise a 4xx LedgerError."""
        body = json_object(raw)
        if self.at_least_one and not self.fields.keys() & body.keys():
            raise errors.InvalidFieldError(f"At least one of {', '.join(self.fields)} is required.")
        return {
            name: spec.read(name, body.get(name))
            for name, spec in self.fields.items()
            if name in body or name in self.required
        }

    def schema(self) -> Schema:
        schema: Schema = {
            "type": "object",
            "properties": {name: spec.schema() for name, spec in self.fields.items()},
        }
        if self.required:
            schema["required"] = list(self.required)
        if self.at_least_one:
            schema["anyOf"] = [{"required": [name]} for name in self.fields]
        return _described(schema, self.description)


EMAIL = Text(
    3,
    EMAIL_LENGTH_MAX,
    ((EMAIL_PATTERN, "must look like an email address"),),
    description="Compared case-insensitively, stored as given.",
    examples=("ada@example.com",),
)
FULL_NAME = Text(
    FULL_NAME_LENGTH_MIN,
    FULL_NAME_LENGTH_MAX,
    ((TEXT_PATTERN, "must not hold control characters"), (NAME_PATTERN, "must not be blank")),
    description="Not blank, no control characters.",
    examples=("Ada Lovelace",),
)
PASSWORD = Text(PASSWORD_LENGTH_MIN, PASSWORD_LENGTH_MAX, examples=("s3cret!",))
IS_ADMIN = Flag()
IS_AUDITOR = Flag(description="The auditor role: reads everything, changes nothing. Never with is_admin.")

# What no account can have is answered like a wrong password (401), before argon2 spends time
# on it (and NUL, which PostgreSQL text cannot hold, never reaches the database).
LOGIN = Body(
    "Login",
    {
        "email": Text(0, EMAIL_LENGTH_MAX, ((TEXT_PATTERN, ""),), refusal=errors.InvalidCredentialsError),
        "password": Text(0, PASSWORD_LENGTH_MAX, refusal=errors.InvalidCredentialsError),
    },
    required=("email", "password"),
)
REGISTRATION = Body(
    "Registration",
    {
        "is_admin": Flag(const=False, rule="registration never grants a role"),
        "is_auditor": Flag(const=False, rule="registration never grants a role"),
        "email": EMAIL,
        "full_name": FULL_NAME,
        "password": PASSWORD,
    },
    required=("email", "full_name", "password"),
)
NEW_USER = Body(
    "NewUser",
    {
        "is_admin": IS_ADMIN,
        "is_auditor": IS_AUDITOR,
        "email": EMAIL,
        "full_name": FULL_NAME,
        "password": PASSWORD,
    },
    required=("email", "full_name", "password"),
)
USER_CHANGES = Body(
    "UserChanges",
    {
        "email": EMAIL,
        "full_name": FULL_NAME,
        "password": PASSWORD,
        "is_admin": IS_ADMIN,
        "is_auditor": IS_AUDITOR,
    },
    at_least_one=True,
    description="Any non-empty subset of the user fields.",
)
DELIVERY = Body(
    "Delivery",
    {
        "transaction_id": Text(
            1, TRANSACTION_ID_LENGTH_MAX, ((TEXT_PATTERN, "must not hold control characters"),)
        ),
        "user_id": Id("The user paid."),
        "account_id": Id("The user's account to credit; opened if it does not exist."),
        "amount": Amount(),
        "signature": Signature(
            "Hex SHA-256 of account_id, amount, transaction_id and user_id as written in the JSON, "
            "followed by the secret (lowercase, compared case-insensitively). Required unless the "
            "delivery is signed with the Standard Webhooks headers. A signature buys one credit: "
            "reused under another transaction_id, it is refused (409 signature_reused)."
        ),
    },
    required=("transaction_id", "user_id", "account_id", "amount"),
)
REASON_LENGTH_MAX = 500
TRANSFER = Body(
    "TransferRequest",
    {
        "from_account_id": Id("One of the caller's accounts."),
        "to_account_id": Id("Any user's account but the source."),
        "amount": Amount(),
    },
    required=("from_account_id", "to_account_id", "amount"),
)
REVERSAL = Body(
    "ReversalRequest",
    {
        "amount": Amount(),
        "reason": Text(
            1,
            REASON_LENGTH_MAX,
            ((TEXT_PATTERN, "must not hold control characters"), (NAME_PATTERN, "must not be blank")),
            description="Why: a refund, a chargeback. Auditors read it in the log.",
        ),
    },
    required=("amount", "reason"),
)
REQUEST_BODIES = (LOGIN, REGISTRATION, NEW_USER, USER_CHANGES, DELIVERY, TRANSFER, REVERSAL)
