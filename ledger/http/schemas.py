"""The schemas of the service's answers in /openapi.json (ledger.http.render writes them)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ledger.audit import feed
from ledger.http.bodies import BIGINT_MAX

Schema = dict[str, Any]
SHA256_HEX = "^[0-9a-f]{64}$"


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _id(description: str) -> Schema:
    return {"type": "integer", "minimum": 1, "maximum": BIGINT_MAX, "description": description}


def cursor(description: str) -> Schema:
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


def responses() -> dict[str, Schema]:
    """Return the schemas of the answers (render.py writes them), by name."""
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
                "cursor": cursor("Continue after this event."),
                "position": _id("The event's position in the log."),
                "stream": {
                    "type": "string",
                    "pattern": "^(user-[0-9]+|account-[0-9]+|transfer-[0-9]+|reversal-[0-9]+)$",
                },
                "stream_version": {"type": "integer", "minimum": 1},
                "type": {
                    "enum": [
                        "UserRegistered",
                        "UserUpdated",
                        "UserDeleted",
                        "AccountOpened",
                        "PaymentReceived",
                        "TransferMade",
                        "PaymentReversed",
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
                "next": cursor("Where to continue (the same cursor when nothing followed)."),
            }
        ),
        "BalanceSummary": _object(
            {
                "through": cursor("The feed's cursor these balances stand at."),
                "source": {"enum": ["projections", "log"]},
                "accounts": {"type": "integer", "minimum": 0},
                "balance_total": _money("The sum of all balances.", minimum=0),
                "checksum": {"type": "string", "pattern": SHA256_HEX},
                "checksum_algorithm": {"type": "string"},
            }
        ),
        "Transfer": _object(
            {
                "id": _id("The transfer."),
                "from_account_id": _id("The account debited."),
                "to_account_id": _id("The account credited."),
                "amount": _money("The amount moved.", exclusiveMinimum=0),
                "created_at": {"type": "string", "format": "date-time"},
            }
        ),
        "Reversal": _object(
            {
                "id": _id("The reversal."),
                "payment_id": _id("The payment reversed."),
                "account_id": _id("The account debited."),
                "amount": _money("The amount taken back.", exclusiveMinimum=0),
                "reason": {"type": "string"},
                "created_at": {"type": "string", "format": "date-time"},
            }
        ),
        "Posting": _object(
            {
                "id": _id("The ledger transaction's position in the log."),
                "transaction_id": {
                    "type": "string",
                    "description": "The payment's transaction_id, or transfer-<id>, or reversal-<id>.",
                },
                "kind": {"enum": ["payment", "transfer", "reversal"]},
                "amount": _money("What the account gained (negative: lost)."),
                "balance_after": _money("The account's balance after it."),
                "created_at": {"type": "string", "format": "date-time"},
            }
        ),
        "TrialBalance": _object(
            {
                "as_of": {"type": ["string", "null"], "description": "The cut asked for, if any."},
                "kinds": {
                    "type": "array",
                    "items": _object(
                        {
                            "kind": {"type": "string", "description": "user, or a system account's kind."},
                            "accounts": {"type": "integer", "minimum": 0},
                            "balance": _money("The sum of their balances."),
                        }
                    ),
                },
                "total": _money("The sum of every balance: 0.00.", const=0),
            }
        ),
        "Ready": _object({"status": {"const": "ready"}}),
        "Deleted": _object({"message": {"const": "User deleted successfully"}}),
        "Health": _object({"status": {"const": "ok"}}),
    }
