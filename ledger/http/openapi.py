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
from ledger.http import bodies, parse, schemas
from ledger.http.auth import PUBLIC, USER
from ledger.http.bodies import BIGINT_MAX, Body
from ledger.http.errors import (
    DATABASE_BUSY,
    DATABASE_UNAVAILABLE,
    HASHING_BUSY,
    NOT_REPLICATED,
    OUTAGES,
    STATUS_OF,
)
from ledger.http.schemas import ref

if TYPE_CHECKING:
    from ledger.http.routes import Route

Schema = dict[str, Any]

OPENAPI_VERSION = "3.1.0"
ACCESS_EXTENSION = "x-ledger-access"  # public, user, audit or admin: who may call the operation
SECURITY_SCHEME = "bearerAuth"
SECONDS: Schema = {"type": "string", "pattern": "^[0-9]+$"}
BODY_REFUSALS = (errors.MalformedRequestError, errors.InvalidFieldError, errors.BodyTooLargeError)
# A write on a primary whose synchronous standby did not confirm it is not acknowledged either.
UNAVAILABLE = (DATABASE_UNAVAILABLE, DATABASE_BUSY, NOT_REPLICATED)


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
    return {"name": name, "in": "query", "schema": schemas.cursor(description), "description": description}


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


def idempotency_key_parameter() -> Schema:
    return {
        "name": "Idempotency-Key",
        "in": "header",
        "required": True,
        "description": (
            "1 to 255 printable ASCII characters, new for each movement: a retry with the same key and "
            "body gets the original answer (200), with another body 409 idempotency_conflict."
        ),
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": parse.IDEMPOTENCY_KEY_LENGTH_MAX,
            "pattern": parse.IDEMPOTENCY_KEY_PATTERN,
        },
    }


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
                **schemas.responses(),
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
