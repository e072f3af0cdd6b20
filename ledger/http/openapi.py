"""The OpenAPI 3.1 document of the service, built from the route table (ledger.http.routes).

Request bodies are described by their declarations (ledger.http.bodies), which also read them;
error codes come from ledger.errors and their statuses from STATUS_OF; limits from the
constants the service checks with. So the document cannot drift from the service in those.
The schemathesis test in tests/e2e fuzzes whatever is documented here.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ledger import errors
from ledger.audit import feed
from ledger.http import bodies, parse
from ledger.http.auth import PUBLIC, USER
from ledger.http.bodies import BIGINT_MAX, Body
from ledger.http.errors import DATABASE_BUSY, DATABASE_UNAVAILABLE, HASHING_BUSY, OUTAGES, STATUS_OF

if TYPE_CHECKING:
    from ledger.http.routes import Route

Schema = dict[str, Any]

OPENAPI_VERSION = "3.1.0"
ACCESS_EXTENSION = "x-ledger-access"  # public, user, audit or admin: who may call the operation
SECURITY_SCHEME = "bearerAuth"
SHA256_HEX = "^[0-9a-f]{64}$"
SECONDS: Schema = {"type": "string", "pattern": "^[0-9]+$"}
BODY_REFUSALS = (errors.MalformedRequestError, errors.InvalidFieldError, errors.BodyTooLargeError)
UNAVAILABLE = (DATABASE_UNAVAILABLE, DATABASE_BUSY)


@dataclass(frozen=True)
class Operation:
    """What the document says of one method of a route; 401, 403 and 503 follow from the
    route's access, uses_database and hashes_passwords."""

    operation_id: str
    summary: str
    tag: str
    responses: dict[str, Schema]
    refusals: tuple[type[errors.LedgerError], ...] = ()
    parameters: tuple[Schema, ...] = ()
    body: Body | None = None
    uses_database: bool = True
    hashes_passwords: bool = False


# Building blocks ------------------------------------------------------------------------------


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Schema) -> Schema:
    return {"content": {"application/json": {"schema": schema}}}


def answer(description: str, schema: Schema, **headers: Schema) -> Schema:
    response: Schema = {"description": description, **_json(schema)}
    if headers:
        response["headers"] = headers
    return response


def page_of(item: str) -> Schema:
    return answer(
        'A page, a bare array. When more rows follow, `Link: <...>; rel="next"` gives the next page.',
        {"type": "array", "items": ref(item)},
        Link={"schema": {"type": "string", "pattern": '^<[^>]+>; rel="next"$'}},
    )


def unavailable(causes: Iterable[str], extra: Iterable[tuple[str, str]] = ()) -> dict[str, Schema]:
    """The 503 answer of these outage codes (and of extra codes, with their causes)."""
    described = [(code, OUTAGES[code]) for code in causes] + list(extra)
    return {
        "503": {
            "description": " ".join(f"`{code}`: {cause}" for code, cause in described),
            "headers": {"Retry-After": {"required": True, "schema": SECONDS}},
            **_json({"allOf": [ref("Error")], "properties": {"error": {"enum": [c for c, _ in described]}}}),
        }
    }


def _id(description: str) -> Schema:
    return {"type": "integer", "minimum": 1, "maximum": BIGINT_MAX, "description": description}


def _cursor(description: str) -> Schema:
    return {"type": "string", "pattern": feed.CURSOR_PATTERN, "description": description}


def _money(description: str, **limits: Any) -> Schema:
    return {"type": "number", **limits, "description": description + " Exact, written with two decimals."}


def _object(properties: dict[str, Schema], *, required: Iterable[str] | None = None) -> Schema:
    """A response object: exactly these properties, all present unless required says otherwise."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties if required is None else required),
        "additionalProperties": False,
    }


# Parameters ---------------------------------------------------------------------------------


def page_parameters() -> tuple[Schema, ...]:
    return (
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
            "schema": {"type": "integer", "minimum": 0, "maximum": BIGINT_MAX},
            "description": "Continue after this id (from the Link header).",
        },
    )


def as_of_parameter() -> Schema:
    return {
        "name": "as_of",
        "in": "query",
        "schema": {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": BIGINT_MAX},
                {"type": "string", "format": "date-time"},
            ]
        },
        "description": (
            "The past, computed from the log: after this log position, or after the events recorded "
            "up to this time (ISO-8601 with a time zone)."
        ),
    }


def cursor_parameter(name: str, description: str) -> Schema:
    return {"name": name, "in": "query", "schema": _cursor(description), "description": description}


def id_parameter(name: str, where: str, description: str | None = None) -> Schema:
    parameter: Schema = {
        "name": name,
        "in": where,
        "schema": {"type": "integer", "minimum": 1, "maximum": BIGINT_MAX},
    }
    if where == "path":
        parameter["required"] = True
    if description:
        parameter["description"] = description
    return parameter


def standard_webhooks_headers() -> tuple[Schema, ...]:
    def header(name: str, description: str, schema: Schema) -> Schema:
        return {
            "name": name,
            "in": "header",
            "required": False,
            "description": f"Standard Webhooks (standardwebhooks.com), instead of `signature`: {description}",
            "schema": schema,
        }

    return (
        header(
            "webhook-id",
            "The delivery's id; spent once, like a signature.",
            {"type": "string", "minLength": 1, "maxLength": parse.WEBHOOK_ID_LENGTH_MAX},
        ),
        header(
            "webhook-timestamp",
            "When it was signed, in seconds since 1970; at most 5 minutes from now.",
            {"type": "string", "pattern": "^[0-9]{1,19}$"},
        ),
        header(
            "webhook-signature",
            'Space-separated "v1,<base64 HMAC-SHA256 of id.timestamp.body>" entries; any may match.',
            {"type": "string"},
        ),
    )


# The document -------------------------------------------------------------------------------


def document(routes: Sequence[Route]) -> Schema:
    """Return the OpenAPI 3.1 document of these routes."""
    paths: dict[str, Schema] = {}
    for route in routes:
        if not route.operations:
            continue  # a page for people (/docs), not part of the API
        operations = {
            method: _operation(operation, route.access) for method, operation in route.operations.items()
        }
        for index, path in enumerate(route.paths):
            item = copy.deepcopy(operations)
            for rendered in item.values():
                if index:  # each alias gets its own operationId
                    rendered["operationId"] += f"Alias{index}"
                    rendered["description"] = "An alias, for clients of an older deployment."
            paths[path] = item
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "ledger",
            "version": "1",
            "description": (
                "An event-sourced payments ledger. Money is exact: amounts and balances are JSON "
                "numbers with two decimals, read without a float. Every error is "
                '`{"error": code, "message": text}` with a 4xx status (503 while the database '
                f"is away). Bodies are JSON, at most {bodies.BODY_SIZE_MAX} bytes."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": {
                **{body.name: body.schema() for body in bodies.REQUEST_BODIES},
                **_response_schemas(),
            },
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


def _operation(operation: Operation, access: str) -> Schema:
    refused = list(operation.refusals)
    if operation.body is not None:
        refused[:0] = BODY_REFUSALS
    if access != PUBLIC:
        refused.append(errors.UnauthenticatedError)
    if access not in (PUBLIC, USER):  # admin, or any role above a plain user
        refused.append(errors.ForbiddenError)
    outages = [*UNAVAILABLE, *([HASHING_BUSY] if operation.hashes_passwords else [])]
    rendered: Schema = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "tags": [operation.tag],
        ACCESS_EXTENSION: access,
        "security": [] if access == PUBLIC else [{SECURITY_SCHEME: []}],
        "responses": {
            **(unavailable(outages) if operation.uses_database else {}),
            **_refusals(refused),
            **operation.responses,  # an operation's own 503 (readiness) replaces the general one
        },
    }
    if operation.parameters:
        rendered["parameters"] = list(operation.parameters)
    if operation.body is not None:
        rendered["requestBody"] = {"required": True, **_json(ref(operation.body.name))}
    rendered["responses"] = dict(sorted(rendered["responses"].items()))
    return rendered


def _refusals(refusals: Iterable[type[errors.LedgerError]]) -> dict[str, Schema]:
    """The error responses of these refusals, grouped by their status, with their codes."""
    by_status: dict[int, list[type[errors.LedgerError]]] = {}
    for refusal in refusals:
        by_status.setdefault(STATUS_OF[refusal], []).append(refusal)
    responses = {}
    for status, group in sorted(by_status.items()):
        response: Schema = {
            "description": " ".join(f"`{error.code}`: {error.message}" for error in group),
            **_json({"allOf": [ref("Error")], "properties": {"error": {"enum": [e.code for e in group]}}}),
        }
        if errors.UnauthenticatedError in group:
            response["headers"] = {"WWW-Authenticate": {"required": True, "schema": {"const": "Bearer"}}}
        if errors.TooManyAttemptsError in group:
            response["headers"] = {"Retry-After": {"required": True, "schema": SECONDS}}
        responses[str(status)] = response
    return responses


def _response_schemas() -> dict[str, Schema]:
    user_properties = {
        "id": _id("The user."),
        "email": {"type": "string"},
        "full_name": {"type": "string"},
        "is_admin": {"type": "boolean"},
        "is_auditor": {"type": "boolean"},
    }
    payment_properties = {
        "id": _id("The payment, in the order received."),
        "transaction_id": {"type": "string"},
        "account_id": _id("The account credited."),
        "amount": _money("The amount credited.", exclusiveMinimum=0),
        "created_at": {"type": "string", "format": "date-time"},
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
        "Token": _object(
            {
                "access_token": {"type": "string", "description": "An HS256 JWT."},
                "token": {"type": "string", "description": "The same JWT."},
                "token_type": {"const": "bearer"},
                "expires_in": {"type": "integer", "minimum": 1, "description": "Seconds."},
                "user_id": _id("The user logged in."),
            }
        ),
        "User": _object(user_properties),
        "Account": _object({"id": _id("The account."), "balance": _money("The balance.", minimum=0)}),
        "UserWithAccounts": _object(
            {**user_properties, "accounts": {"type": "array", "items": ref("Account")}}
        ),
        "Payment": _object(payment_properties),
        "AuditedPayment": _object({**payment_properties, "user_id": _id("The user paid.")}),
        "PaymentOutcome": _object(
            {
                "status": {"enum": ["credited", "already_processed"]},
                "transaction_id": {"type": "string"},
                "account_id": _id("The account credited."),
                "amount": _money("The amount credited.", exclusiveMinimum=0),
                "balance": _money("The balance after this payment.", minimum=0),
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
                    "description": 'The event as recorded; password hashes as "sha256:<hex>".',
                },
                "transaction_id": {"type": ["string", "null"]},
                "hash": {"type": "string", "pattern": SHA256_HEX, "description": "This link of the chain."},
                "recorded_at": {"type": "string", "format": "date-time"},
            }
        ),
        "EventPage": _object(
            {
                "events": {"type": "array", "items": ref("Event")},
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
