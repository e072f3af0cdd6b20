"""The OpenAPI 3.1 document of the HTTP contract (../shared/API.md), and the /docs page.

`document()` builds it when create_app asks, never at import. Limits and text rules come from
the constants ledger.http.parse validates with, error codes from ledger.errors and their
statuses from STATUS_OF, so the document cannot drift from the service in those.

To describe a new endpoint: write one small function returning its operation (built with
`_operation`), add it to `_paths()` with `_route(paths, method=...)`, and put any new object
in `_schemas()`. The schemathesis test in tests/e2e fuzzes whatever is listed here.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from falcon.asgi import Request, Response

from ledger import errors
from ledger.events import feed
from ledger.http import parse
from ledger.http.auth import ADMIN, AUDIT, PUBLIC, USER
from ledger.http.errors import DATABASE_BUSY, DATABASE_UNAVAILABLE, HASHING_BUSY, OUTAGES, STATUS_OF

OPENAPI_VERSION = "3.1.0"
ACCESS_EXTENSION = "x-ledger-access"  # public, user, audit or admin: who may call the operation
SECURITY_SCHEME = "bearerAuth"
SHA256_HEX = "^[0-9a-f]{64}$"
SECONDS: Schema = {"type": "string", "pattern": "^[0-9]+$"}

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Schema) -> Schema:
    return {"content": {"application/json": {"schema": schema}}}


# Schemas ------------------------------------------------------------------------------------


def _id(description: str) -> Schema:
    return {"type": "integer", "minimum": 1, "maximum": parse.BIGINT_MAX, "description": description}


def _written_id(description: str) -> Schema:
    """An id in a request body: JSON Schema calls 1.0 an integer too, the service does not."""
    return _id(description + " Written as an integer: no fraction, no exponent (1.0 is refused).")


def _amount_string_pattern() -> str:
    """Return the decimal strings that are valid amounts: above 0, at most AMOUNT_MAX, 2 places."""
    digits = len(str(parse.AMOUNT_MAX)) - 1
    assert 10**digits == parse.AMOUNT_MAX, "the pattern below is written for a power of ten"
    return (
        rf"^(0\.(0[1-9]|[1-9][0-9]?)|[1-9][0-9]{{0,{digits - 1}}}(\.[0-9]{{1,2}})?"
        rf"|1{'0' * digits}(\.00?)?)$"
    )


def _object(properties: dict[str, Schema], *, required: Iterable[str] | None = None) -> Schema:
    """A response object: exactly these properties, all present unless required says otherwise."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties if required is None else required),
        "additionalProperties": False,
    }


def _user_fields() -> dict[str, Schema]:
    """The request fields of a user, with the rules parse.py applies to them."""
    return {
        "email": {
            "type": "string",
            "minLength": 3,
            "maxLength": parse.EMAIL_LENGTH_MAX,
            "pattern": parse.EMAIL_PATTERN,
            "description": "Compared case-insensitively, stored as given.",
            "examples": ["ada@example.com"],
        },
        "full_name": {
            "type": "string",
            "minLength": parse.FULL_NAME_LENGTH_MIN,
            "maxLength": parse.FULL_NAME_LENGTH_MAX,
            "pattern": parse.NAME_PATTERN,
            "description": "Not blank, no control characters.",
            "examples": ["Ada Lovelace"],
        },
        "password": {
            "type": "string",
            "minLength": parse.PASSWORD_LENGTH_MIN,
            "maxLength": parse.PASSWORD_LENGTH_MAX,
            "examples": ["s3cret!"],
        },
        "is_admin": {"type": "boolean"},
        "is_auditor": {
            "type": "boolean",
            "description": "The auditor role: reads everything, changes nothing. Never with is_admin.",
        },
    }


def _cursor(description: str) -> Schema:
    return {"type": "string", "pattern": feed.CURSOR_PATTERN, "description": description}


def _money(description: str, **limits: Any) -> Schema:
    return {"type": "number", **limits, "description": description + " Exact, written with two decimals."}


def _schemas() -> dict[str, Schema]:
    user_fields = _user_fields()
    registration_fields = {
        **user_fields,
        "is_admin": {"type": "boolean", "const": False, "description": "Registration never makes an admin."},
        "is_auditor": {"type": "boolean", "const": False, "description": "Nor an auditor."},
    }
    user_properties = {
        "id": _id("The user."),
        "email": {"type": "string"},
        "full_name": {"type": "string"},
        "is_admin": {"type": "boolean"},
        "is_auditor": {"type": "boolean"},
    }
    return {
        "Error": {
            "type": "object",
            "properties": {
                "error": {"type": "string", "description": "A stable snake_case code."},
                "message": {"type": "string", "description": "For a person."},
            },
            "required": ["error", "message"],
            "description": "Every refusal. Some carry more, such as `field` or the differing fields.",
        },
        "Login": {
            "type": "object",
            "properties": {
                # Longer values, or control characters, are answered like a wrong pair: 401.
                "email": {
                    "type": "string",
                    "maxLength": parse.EMAIL_LENGTH_MAX,
                    "pattern": parse.TEXT_PATTERN,
                },
                "password": {"type": "string", "maxLength": parse.PASSWORD_LENGTH_MAX},
            },
            "required": ["email", "password"],
        },
        "Token": _object(
            {
                "access_token": {"type": "string", "description": "An HS256 JWT."},
                "token": {"type": "string", "description": "The same JWT."},
                "token_type": {"const": "bearer"},
                "expires_in": {"type": "integer", "minimum": 1, "description": "Seconds."},
                "user_id": _id("The user logged in."),
            }
        ),
        "Registration": {
            "type": "object",
            "properties": registration_fields,
            "required": ["email", "full_name", "password"],
        },
        "NewUser": {
            "type": "object",
            "properties": user_fields,
            "required": ["email", "full_name", "password"],
        },
        "UserChanges": {
            "type": "object",
            "properties": user_fields,
            "anyOf": [{"required": [name]} for name in user_fields],
            "description": "Any non-empty subset of the user fields.",
        },
        "User": _object(user_properties),
        "Account": _object({"id": _id("The account."), "balance": _money("The balance.", minimum=0)}),
        "UserWithAccounts": _object(
            {**user_properties, "accounts": {"type": "array", "items": _ref("Account")}}
        ),
        "Payment": _object(
            {
                "id": _id("The payment, in the order received."),
                "transaction_id": {"type": "string"},
                "account_id": _id("The account credited."),
                "amount": _money("The amount credited.", exclusiveMinimum=0),
                "created_at": {"type": "string", "format": "date-time"},
            }
        ),
        "Delivery": {
            "type": "object",
            "properties": {
                "transaction_id": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": parse.TRANSACTION_ID_LENGTH_MAX,
                    "pattern": parse.TEXT_PATTERN,
                },
                "user_id": _written_id("The user paid."),
                "account_id": _written_id("The user's account to credit; opened if it does not exist."),
                "amount": {
                    "anyOf": [
                        {
                            "type": "number",
                            "exclusiveMinimum": 0,
                            "maximum": int(parse.AMOUNT_MAX),
                            "multipleOf": 0.01,
                        },
                        {"type": "string", "pattern": _amount_string_pattern()},
                    ],
                    "description": (
                        "Above 0, at most 10^12, with at most 2 decimal places as written (1.500 is "
                        'refused): a JSON number, or a plain decimal string such as "100.50" (no '
                        "sign, exponent or leading zero)."
                    ),
                },
                "signature": {
                    "type": "string",
                    "pattern": "^[0-9a-fA-F]{64}$",
                    "description": (
                        "Hex SHA-256 of account_id, amount, transaction_id and user_id as written in "
                        "the JSON, followed by the secret (lowercase, compared case-insensitively). "
                        "Required unless the delivery is signed with the Standard Webhooks headers. "
                        "A signature buys one credit: reused under another transaction_id, it is "
                        "refused (409 signature_reused)."
                    ),
                },
            },
            "required": ["transaction_id", "user_id", "account_id", "amount"],
        },
        "PaymentOutcome": _object(
            {
                "status": {"enum": ["credited", "already_processed"]},
                "transaction_id": {"type": "string"},
                "account_id": _id("The account credited."),
                "amount": _money("The amount credited.", exclusiveMinimum=0),
                "balance": _money("The balance after this payment.", minimum=0),
            }
        ),
        "AuditedPayment": _object(
            {
                "id": _id("The payment, in the order received."),
                "transaction_id": {"type": "string"},
                "user_id": _id("The user paid."),
                "account_id": _id("The account credited."),
                "amount": _money("The amount credited.", exclusiveMinimum=0),
                "created_at": {"type": "string", "format": "date-time"},
            }
        ),
        "Event": _object(
            {
                "cursor": _cursor("Continue after this event."),
                "position": _id("The event's position in the log."),
                "stream": {"type": "string", "pattern": "^(user|account)-[0-9]+$"},
                "stream_version": {"type": "integer", "minimum": 1},
                "type": {
                    "enum": [
                        "UserRegistered",
                        "UserUpdated",
                        "UserDeleted",
                        "AccountOpened",
                        "PaymentReceived",
                    ]
                },
                "data": {
                    "type": "object",
                    "description": 'The event as recorded; password hashes and signatures as "sha256:<hex>".',
                },
                "transaction_id": {"type": ["string", "null"]},
                "hash": {
                    "type": "string",
                    "pattern": "^[0-9a-f]{64}$",
                    "description": "This link of the chain.",
                },
                "recorded_at": {"type": "string", "format": "date-time"},
            }
        ),
        "EventPage": _object(
            {
                "events": {"type": "array", "items": _ref("Event")},
                "next": _cursor("Where to continue (the same cursor when nothing followed)."),
            }
        ),
        "BalanceSummary": _object(
            {
                "through": _cursor("The feed's cursor these balances stand at."),
                "source": {"enum": ["projections", "log"]},
                "accounts": {"type": "integer", "minimum": 0},
                "balance_total": _money("The sum of all balances.", minimum=0),
                "checksum": {"type": "string", "pattern": SHA256_HEX},
                "checksum_algorithm": {"type": "string"},
            }
        ),
        "Ready": _object({"status": {"const": "ready"}}),
        "Deleted": _object({"message": {"const": "User deleted successfully"}}),
        "Health": _object({"status": {"const": "ok"}}),
    }


# Responses ----------------------------------------------------------------------------------


def _refusals(*refusals: type[errors.LedgerError]) -> dict[str, Schema]:
    """The error responses of these refusals, grouped by their status, with their codes."""
    by_status: dict[int, list[type[errors.LedgerError]]] = {}
    for refusal in refusals:
        by_status.setdefault(STATUS_OF[refusal], []).append(refusal)
    responses = {}
    for status, group in sorted(by_status.items()):
        response: Schema = {
            "description": " ".join(f"`{error.code}`: {error.message}" for error in group),
            **_json({"allOf": [_ref("Error")], "properties": {"error": {"enum": [e.code for e in group]}}}),
        }
        if errors.UnauthenticatedError in group:
            response["headers"] = {"WWW-Authenticate": {"required": True, "schema": {"const": "Bearer"}}}
        if errors.TooManyAttemptsError in group:
            response["headers"] = {"Retry-After": {"required": True, "schema": SECONDS}}
        responses[str(status)] = response
    return responses


UNAVAILABLE = (DATABASE_UNAVAILABLE, DATABASE_BUSY)


def _unavailable(causes: Iterable[str]) -> dict[str, Schema]:
    causes = list(causes)
    return {
        "503": {
            "description": " ".join(f"`{code}`: {OUTAGES[code]}" for code in causes),
            "headers": {
                "Retry-After": {"required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}}
            },
            **_json({"allOf": [_ref("Error")], "properties": {"error": {"enum": causes}}}),
        }
    }


def _answer(description: str, schema: Schema, **headers: Schema) -> Schema:
    response: Schema = {"description": description, **_json(schema)}
    if headers:
        response["headers"] = headers
    return response


def _page_parameters() -> list[Schema]:
    return [
        {
            "name": "limit",
            "in": "query",
            "schema": {
                "type": "integer",
                "minimum": 1,
                "maximum": parse.PAGE_SIZE_MAX,
                "default": parse.PAGE_SIZE_DEFAULT,
            },
            "description": "Page size.",
        },
        {
            "name": "after",
            "in": "query",
            "schema": {"type": "integer", "minimum": 0, "maximum": parse.BIGINT_MAX},
            "description": "Continue after this id (from the Link header).",
        },
    ]


def _as_of_parameter() -> Schema:
    return {
        "name": "as_of",
        "in": "query",
        "schema": {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": parse.BIGINT_MAX},
                {"type": "string", "format": "date-time"},
            ]
        },
        "description": (
            "The past, computed from the log: after this log position, or after the events recorded "
            "up to this time (ISO-8601 with a time zone)."
        ),
    }


def _cursor_parameter(name: str, description: str) -> Schema:
    return {"name": name, "in": "query", "schema": _cursor(description), "description": description}


def _page_of(item: str) -> Schema:
    return _answer(
        'A page, a bare array. When more rows follow, `Link: <...>; rel="next"` gives the next page.',
        {"type": "array", "items": _ref(item)},
        Link={"schema": {"type": "string", "pattern": '^<[^>]+>; rel="next"$'}},
    )


def _body(schema_name: str) -> Schema:
    return {"required": True, **_json(_ref(schema_name))}


BODY_REFUSALS = (errors.MalformedRequestError, errors.InvalidFieldError, errors.BodyTooLargeError)


def _operation(
    operation_id: str,
    summary: str,
    *,
    access: str,
    tag: str,
    responses: dict[str, Schema],
    refusals: Iterable[type[errors.LedgerError]] = (),
    parameters: Iterable[Schema] = (),
    request_body: Schema | None = None,
    uses_database: bool = True,
    hashes_passwords: bool = False,
) -> Schema:
    """Return one operation; the bearer scheme, 401, 403 and 503 follow from access,
    uses_database and hashes_passwords."""
    refused = list(refusals)
    if access != PUBLIC:
        refused.append(errors.UnauthenticatedError)
    if access not in (PUBLIC, USER):  # admin, or any role above a plain user
        refused.append(errors.ForbiddenError)
    operation: Schema = {
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
        ACCESS_EXTENSION: access,
        "security": [] if access == PUBLIC else [{SECURITY_SCHEME: []}],
        "parameters": list(parameters),
        "responses": {
            **responses,
            **_refusals(*refused),
            **(
                _unavailable([*UNAVAILABLE, *([HASHING_BUSY] if hashes_passwords else [])])
                if uses_database
                else {}
            ),
        },
    }
    if request_body is not None:
        operation["requestBody"] = request_body
    if not operation["parameters"]:
        del operation["parameters"]
    return operation


# Operations ---------------------------------------------------------------------------------


def _login() -> Schema:
    return _operation(
        "logIn",
        "Log in (users and admins alike)",
        access=PUBLIC,
        tag="session",
        request_body=_body("Login"),
        responses={"200": _answer("A bearer token.", _ref("Token"))},
        refusals=(*BODY_REFUSALS, errors.InvalidCredentialsError, errors.TooManyAttemptsError),
        hashes_passwords=True,
    )


def _register() -> Schema:
    return _operation(
        "register",
        "Register a user (never an admin)",
        access=PUBLIC,
        tag="users",
        request_body=_body("Registration"),
        responses={"201": _answer("The new user.", _ref("User"))},
        refusals=(*BODY_REFUSALS, errors.EmailTakenError, errors.TooManyAttemptsError),
        hashes_passwords=True,
    )


def _about() -> Schema:
    return _operation(
        "aboutMe",
        "The caller",
        access=USER,
        tag="users",
        responses={"200": _answer("The token's user.", _ref("User"))},
    )


def _my_accounts() -> Schema:
    return _operation(
        "myAccounts",
        "The caller's accounts, by id",
        access=USER,
        tag="users",
        parameters=[_as_of_parameter()],
        responses={"200": _answer("Every account.", {"type": "array", "items": _ref("Account")})},
        refusals=(errors.InvalidQueryError,),
    )


def _my_payments() -> Schema:
    return _operation(
        "myPayments",
        "The caller's payments, newest first",
        access=USER,
        tag="users",
        parameters=_page_parameters(),
        responses={"200": _page_of("Payment")},
        refusals=(errors.InvalidQueryError,),
    )


def _user_list() -> Schema:
    return _operation(
        "listUsers",
        "Every user with accounts and balances, by id (admins and auditors)",
        access=AUDIT,
        tag="admins",
        parameters=[*_page_parameters(), _as_of_parameter()],
        responses={"200": _page_of("UserWithAccounts")},
        refusals=(errors.InvalidQueryError,),
    )


def _user_creation() -> Schema:
    return _operation(
        "createUser",
        "Create a user or an admin",
        access=ADMIN,
        tag="admins",
        request_body=_body("NewUser"),
        responses={"201": _answer("The new user.", _ref("User"))},
        refusals=(*BODY_REFUSALS, errors.EmailTakenError, errors.RoleConflictError),
        hashes_passwords=True,
    )


def _user_id_parameter() -> Schema:
    return {
        "name": "user_id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 1, "maximum": parse.BIGINT_MAX},
    }


def _user_update() -> Schema:
    return _operation(
        "updateUser",
        "Change a user's email, name, password or admin right",
        access=ADMIN,
        tag="admins",
        parameters=[_user_id_parameter()],
        request_body=_body("UserChanges"),
        responses={"200": _answer("The updated user.", _ref("User"))},
        refusals=(*BODY_REFUSALS, errors.UserNotFoundError, errors.EmailTakenError, errors.RoleConflictError),
        hashes_passwords=True,
    )


def _user_deletion() -> Schema:
    return _operation(
        "deleteUser",
        "Delete a user (its events stay in the log)",
        access=ADMIN,
        tag="admins",
        parameters=[_user_id_parameter()],
        responses={"200": _answer("Deleted.", _ref("Deleted"))},
        refusals=(errors.UserNotFoundError, errors.CannotDeleteSelfError),
    )


def _payment_webhook() -> Schema:
    return _operation(
        "receivePayment",
        "The payment provider's signed delivery",
        access=PUBLIC,
        tag="webhook",
        request_body=_body("Delivery"),
        responses={
            "201": _answer("Credited.", _ref("PaymentOutcome")),
            "200": _answer("Already processed: the original answer.", _ref("PaymentOutcome")),
        },
        refusals=(
            *BODY_REFUSALS,
            errors.InvalidSignatureError,
            errors.InvalidAmountError,
            errors.BalanceLimitError,
            errors.UserNotFoundError,
            errors.AccountOwnerMismatchError,
            errors.TransactionConflictError,
            errors.SignatureReusedError,
            errors.WebhookIdReusedError,
        ),
        parameters=[
            _standard_webhooks_header(
                "webhook-id", "The delivery's id; spent once, like a signature.", WEBHOOK_ID_SCHEMA
            ),
            _standard_webhooks_header(
                "webhook-timestamp",
                "When it was signed, in seconds since 1970; at most 5 minutes from now.",
                {"type": "string", "pattern": "^[0-9]{1,19}$"},
            ),
            _standard_webhooks_header(
                "webhook-signature",
                'Space-separated "v1,<base64 HMAC-SHA256 of id.timestamp.body>" entries; any may match.',
                {"type": "string"},
            ),
        ],
    )


WEBHOOK_ID_SCHEMA = {"type": "string", "minLength": 1, "maxLength": parse.WEBHOOK_ID_LENGTH_MAX}


def _standard_webhooks_header(name: str, description: str, schema: Schema) -> Schema:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": f"Standard Webhooks (standardwebhooks.com), instead of `signature`: {description}",
        "schema": schema,
    }


def _events() -> Schema:
    return _operation(
        "listEvents",
        "The event log in feed order: never a gap, never an event twice (admins and auditors)",
        access=AUDIT,
        tag="audit",
        parameters=[_page_parameters()[0], _cursor_parameter("after", "Continue after this cursor.")],
        responses={"200": _answer("A page of the feed.", _ref("EventPage"))},
        refusals=(errors.InvalidQueryError,),
    )


def _audit_summary() -> Schema:
    return _operation(
        "auditSummary",
        "The balance checksum, to compare with an independent replay (admins and auditors)",
        access=AUDIT,
        tag="audit",
        parameters=[_cursor_parameter("through", "Compute from the log up to this cursor.")],
        responses={"200": _answer("The balances in one figure.", _ref("BalanceSummary"))},
        refusals=(errors.InvalidQueryError,),
    )


def _audit_payments() -> Schema:
    return _operation(
        "auditPayments",
        "Every user's payments, newest first (admins and auditors)",
        access=AUDIT,
        tag="audit",
        parameters=[
            *_page_parameters(),
            {
                "name": "user_id",
                "in": "query",
                "schema": {"type": "integer", "minimum": 1, "maximum": parse.BIGINT_MAX},
                "description": "Only this user's.",
            },
        ],
        responses={"200": _page_of("AuditedPayment")},
        refusals=(errors.InvalidQueryError,),
    )


def _readiness() -> Schema:
    operation = _operation(
        "readiness",
        "The database answers and every migration is applied",
        access=PUBLIC,
        tag="operations",
        responses={"200": _answer("Ready.", _ref("Ready"))},
    )
    operation["responses"]["503"]["description"] += (
        " `migrations_pending`: this release's schema is not there yet."
    )
    operation["responses"]["503"]["content"]["application/json"]["schema"] = _ref("Error")
    operation["responses"]["503"]["headers"] = {}
    return operation


def _metrics() -> Schema:
    return _operation(
        "metrics",
        "This process's metrics in Prometheus's text format",
        access=PUBLIC,
        tag="operations",
        responses={
            "200": {
                "description": "Prometheus text.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
        uses_database=False,
    )


def _health() -> Schema:
    return _operation(
        "health",
        "The process is alive (touches nothing)",
        access=PUBLIC,
        tag="operations",
        responses={"200": _answer("Alive.", _ref("Health"))},
        uses_database=False,
    )


def _openapi() -> Schema:
    return _operation(
        "openapi",
        "This document",
        access=PUBLIC,
        tag="operations",
        responses={"200": _answer("OpenAPI 3.1.", {"type": "object", "required": ["openapi", "paths"]})},
        uses_database=False,
    )


def _route(paths: Iterable[str], **operations: Schema) -> dict[str, Schema]:
    """Return the path items of a resource and its aliases (each alias gets its own operationId)."""
    items = {}
    for index, path in enumerate(paths):
        item = copy.deepcopy(operations)
        for operation in item.values():
            if index:
                operation["operationId"] += f"Alias{index}"
                operation["description"] = "An alias, for clients of an older deployment."
        items[path] = item
    return items


def _paths() -> dict[str, Schema]:
    return {
        **_route(("/login",), post=_login()),
        **_route(("/register",), post=_register()),
        **_route(("/user/about",), get=_about()),
        **_route(("/user/accounts",), get=_my_accounts()),
        **_route(("/users/payments", "/user/payments"), get=_my_payments()),
        **_route(("/users", "/admin/users", "/audit/users"), get=_user_list()),
        **_route(("/users/create", "/admin/users/create"), post=_user_creation()),
        **_route(("/users/update/{user_id}", "/admin/users/update/{user_id}"), put=_user_update()),
        **_route(("/users/delete/{user_id}", "/admin/users/delete/{user_id}"), delete=_user_deletion()),
        **_route(("/webhook/payment",), post=_payment_webhook()),
        **_route(("/events",), get=_events()),
        **_route(("/audit/summary",), get=_audit_summary()),
        **_route(("/audit/payments",), get=_audit_payments()),
        **_route(("/healthz",), get=_health()),
        **_route(("/readyz",), get=_readiness()),
        **_route(("/metrics",), get=_metrics()),
        **_route(("/openapi.json",), get=_openapi()),
    }


def document() -> Schema:
    """Return the OpenAPI 3.1 document of the service."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "ledger",
            "version": "1",
            "description": (
                "An event-sourced payments ledger. Money is exact: amounts and balances are JSON "
                "numbers with two decimals, read without a float. Every error is "
                '`{"error": code, "message": text}` with a 4xx status (503 while the database '
                f"is away). Bodies are JSON, at most {parse.BODY_SIZE_MAX} bytes."
            ),
        },
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "The token of POST /login.",
                }
            },
        },
    }


# Serving ------------------------------------------------------------------------------------


def swagger_ui_directory() -> Path:
    """Return the Swagger UI assets shipped by the swagger-ui-py package (swagger-ui-bundle.js,
    swagger-ui.css), without importing it (its module loads Jinja, PyYAML and handlers for other
    web frameworks, none of which this service needs); raise RuntimeError if it is missing."""
    spec = find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>ledger API</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/docs/docs.js"></script>
</body>
</html>
"""

# In a file of its own, not inline: the page can then be served with a strict CSP (script-src 'self').
DOCS_SCRIPT = """window.ui = SwaggerUIBundle({
  url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true, validatorUrl: null
});
"""
DOCS_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'"


class OpenApiDocument:
    access = PUBLIC

    def __init__(self, document: Schema) -> None:
        self._document = document

    async def on_get(self, req: Request, resp: Response) -> None:
        resp.media = self._document


class DocsPage:
    """GET /docs: Swagger UI on /openapi.json, from assets served by this service (no CDN)."""

    access = PUBLIC

    async def on_get(self, req: Request, resp: Response) -> None:
        resp.content_type = "text/html; charset=utf-8"
        resp.set_header("Content-Security-Policy", DOCS_CSP)
        resp.text = DOCS_PAGE


class DocsScript:
    access = PUBLIC

    async def on_get(self, req: Request, resp: Response) -> None:
        resp.content_type = "text/javascript; charset=utf-8"
        resp.text = DOCS_SCRIPT
