"""Request parsing: bodies (declared in ledger.http.bodies), headers, query strings and path
parameters in, the values the use cases take out, or a 4xx LedgerError."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from ledger import errors, money
from ledger.audit import feed
from ledger.audit.feed import Cursor
from ledger.commands import NewUser, Reversal, Transfer, UserChanges
from ledger.deliveries import Delivery, StandardWebhookHeaders
from ledger.http import bodies
from ledger.http.bodies import BIGINT_MAX, TEXT_PATTERN
from ledger.projections.past import Cut

PAGE_SIZE_DEFAULT = 100
PAGE_SIZE_MAX = 1000
WEBHOOK_ID_LENGTH_MAX = 256
INTEGER_STRING = re.compile(r"[0-9]{1,19}")
STANDARD_WEBHOOK_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
IDEMPOTENCY_KEY_LENGTH_MAX = 255
# Printable ASCII, as HTTP headers carry it; no space at either end, which HTTP would drop.
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$"
IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)


def login(raw: bytes) -> tuple[str, str]:
    """Return (email, password) of a login body."""
    body = bodies.LOGIN.read(raw)
    return body["email"], body["password"]


def registration(raw: bytes) -> NewUser:
    """Return the user a /register body asks for: never an admin or an auditor (the roles may
    only be sent as false)."""
    body = bodies.REGISTRATION.read(raw)
    return NewUser(body["email"], body["full_name"], body["password"])


def new_user(raw: bytes) -> NewUser:
    """Return the user an admin's create body asks for."""
    body = bodies.NEW_USER.read(raw)
    is_admin, is_auditor = body.get("is_admin", False), body.get("is_auditor", False)
    if is_admin and is_auditor:
        raise errors.RoleConflictError(field="is_auditor")
    return NewUser(body["email"], body["full_name"], body["password"], is_admin, is_auditor)


def user_changes(raw: bytes) -> UserChanges:
    """Return the changes of an update body: a non-empty subset of the user fields."""
    return UserChanges(**bodies.USER_CHANGES.read(raw))


def payment_delivery(raw: bytes, get_header: Callable[[str], str | None]) -> Delivery:
    """Return a webhook delivery of the right shape, its signature not checked yet (that is
    ledger.deliveries.accepted). Standard Webhooks when it sends any of their headers.

    Raises MalformedRequestError, InvalidFieldError, and InvalidSignatureError for Standard
    Webhooks headers that are missing or malformed.
    """
    body = bodies.DELIVERY.read(raw)
    amount, amount_is_string = body["amount"]
    standard_headers = _standard_webhook_headers(get_header)
    if standard_headers is None and "signature" not in body:
        raise bodies.invalid("signature", "a hex string is required")
    return Delivery(
        transaction_id=body["transaction_id"],
        user_id=body["user_id"],
        account_id=body["account_id"],
        amount=amount,
        amount_is_string=amount_is_string,
        signature=body.get("signature"),
        standard_headers=standard_headers,
        raw=raw,
    )


def _standard_webhook_headers(get_header: Callable[[str], str | None]) -> StandardWebhookHeaders | None:
    """Return the Standard Webhooks headers, or None when the delivery sends none of them."""
    webhook_id, timestamp, signature = (get_header(name) for name in STANDARD_WEBHOOK_HEADERS)
    if webhook_id is None and timestamp is None and signature is None:
        return None
    for name, value in zip(STANDARD_WEBHOOK_HEADERS, (webhook_id, timestamp, signature), strict=True):
        if not value:
            raise errors.InvalidSignatureError(f"The {name} header is missing.")
    assert webhook_id and timestamp and signature
    if len(webhook_id) > WEBHOOK_ID_LENGTH_MAX or not re.fullmatch(TEXT_PATTERN, webhook_id):
        raise errors.InvalidSignatureError(
            f"webhook-id must be 1 to {WEBHOOK_ID_LENGTH_MAX} printable characters."
        )
    if not INTEGER_STRING.fullmatch(timestamp):
        raise errors.InvalidSignatureError(
            "webhook-timestamp must be the time of signing in seconds since 1970."
        )
    return StandardWebhookHeaders(webhook_id, timestamp, signature)


def transfer(raw: bytes) -> Transfer:
    """Return the transfer a /transfers body asks for (the amount rules of payments apply)."""
    body = bodies.TRANSFER.read(raw)
    return Transfer(body["from_account_id"], body["to_account_id"], _amount(body["amount"]))


def reversal(raw: bytes, payment_id: int) -> Reversal:
    """Return the reversal of that payment a /payments/{id}/reversals body asks for."""
    body = bodies.REVERSAL.read(raw)
    return Reversal(payment_id, _amount(body["amount"]), body["reason"])


def _amount(written: tuple[str, bool]) -> Decimal:
    text, is_string = written
    money.check_amount(text, is_string)
    return Decimal(text)


def idempotency_key(text: str | None) -> str:
    """Return the Idempotency-Key header: 1 to 255 printable characters."""
    if (
        text is None
        or not 1 <= len(text) <= IDEMPOTENCY_KEY_LENGTH_MAX
        or not IDEMPOTENCY_KEY.fullmatch(text)
    ):
        raise errors.InvalidIdempotencyKeyError()
    return text


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
    return _path_id(text, errors.UserNotFoundError)


def account_id(text: str) -> int:
    """Return the account id of a path; an id no user's account can have is an AccountNotFoundError."""
    return _path_id(text, errors.AccountNotFoundError)


def payment_id(text: str) -> int:
    """Return the payment id of a path; an id no payment can have is a PaymentNotFoundError."""
    return _path_id(text, errors.PaymentNotFoundError)


def _path_id(text: str, not_found: type[errors.LedgerError]) -> int:
    if not INTEGER_STRING.fullmatch(text) or not 1 <= int(text) <= BIGINT_MAX:
        raise not_found()
    return int(text)
