"""Use cases, one async function each. Each owns its write transaction: the events it appends
and the projection rows they change commit together, or not at all.

Inputs arrive already validated (ledger.http.parse); what is refused here is refused by a rule
that needs the database, with a LedgerError subclass. Each writing use case is one call of a
SQL function (sql/0022): the service's database role writes nothing else.

Use cases that hash a password take a db.Source (the pool, or a connection a caller holds) and
hash before they take a connection: argon2 takes tens of milliseconds, and a connection held
meanwhile is one that a payment cannot have.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.errors import NumericValueOutOfRange, UniqueViolation
from psycopg.types.json import Jsonb

from ledger import db, errors, throttle
from ledger.config import LoginThrottle, RequestThrottle
from ledger.events import PaymentReceived
from ledger.events.types import to_data
from ledger.passwords import Passwords
from ledger.projections import users
from ledger.projections.users import LoginRecord, UserView


@dataclass(frozen=True)
class NewUser:
    email: str
    full_name: str
    password: str
    is_admin: bool = False
    is_auditor: bool = False


@dataclass(frozen=True)
class UserChanges:
    """The fields to change; None leaves a field as it is."""

    email: str | None = None
    full_name: str | None = None
    password: str | None = None
    is_admin: bool | None = None
    is_auditor: bool | None = None


@dataclass(frozen=True)
class LoginAttempt:
    email: str
    password: str = field(repr=False)  # never in a log line or a traceback
    client_address: str


@dataclass(frozen=True)
class Registration:
    """Where a public registration comes from, and how many it may make there."""

    client_address: str
    throttle: RequestThrottle


@dataclass(frozen=True)
class Transfer:
    from_account_id: int
    to_account_id: int
    amount: Decimal


@dataclass(frozen=True)
class TransferOutcome:
    is_new: bool  # False: a retry with the same key, answered with the original transfer
    id: int
    from_account_id: int
    to_account_id: int
    amount: Decimal
    created_at: datetime


@dataclass(frozen=True)
class Reversal:
    payment_id: int
    amount: Decimal
    reason: str


@dataclass(frozen=True)
class ReversalOutcome:
    is_new: bool
    id: int
    payment_id: int
    account_id: int
    amount: Decimal
    reason: str
    created_at: datetime


@dataclass(frozen=True)
class PaymentOutcome:
    is_new: bool  # False: a re-delivery, answered with the original result
    transaction_id: str
    account_id: int
    amount: Decimal
    balance: Decimal


REGISTER_USER = """
    SELECT register_user(%(email)s, %(full_name)s, %(password_hash)s, %(is_admin)s, %(is_auditor)s)
"""

UPDATE_USER = """
    SELECT outcome, id, email, full_name, is_admin, is_auditor, credentials_version
    FROM update_user(%(user_id)s, %(email)s, %(full_name)s, %(password_hash)s, %(is_admin)s, %(is_auditor)s)
"""

DELETE_USER = "SELECT delete_user(%(user_id)s)"

TRANSFER_MONEY = """
    SELECT outcome, transfer_id, from_account_id, to_account_id, amount, created_at
    FROM transfer_money(%(user_id)s, %(idempotency_key)s, %(from_account_id)s, %(to_account_id)s, %(amount)s)
"""

REVERSE_PAYMENT = """
    SELECT outcome, reversal_id, payment_id, account_id, amount, reason, created_at
    FROM reverse_payment(%(user_id)s, %(idempotency_key)s, %(payment_id)s, %(amount)s, %(reason)s)
"""

RECEIVE_PAYMENT = """
    SELECT outcome, payment_id, user_id, account_id, amount, balance
    FROM receive_payment(%(transaction_id)s, %(user_id)s, %(account_id)s, %(amount)s, %(delivery)s)
"""


@dataclass(frozen=True)
class _ReceiveResult:
    outcome: str
    payment_id: int | None
    user_id: int
    account_id: int
    amount: Decimal
    balance: Decimal | None


async def register(
    source: db.Source, passwords: Passwords, new_user: NewUser, registration: Registration | None = None
) -> UserView:
    """Create a user (an admin only when an admin asks).

    A public registration (registration given) is first counted against its client address.
    Raises TooManyAttemptsError, EmailTakenError, and passwords.HashingBusyError.
    """
    if registration is not None:
        async with db.connection(source) as conn:
            await throttle.count_registration(conn, registration.throttle, registration.client_address)
    password_hash = await passwords.hash(new_user.password)
    async with db.connection(source) as conn:
        try:
            cursor = await conn.execute(
                REGISTER_USER,
                {
                    "email": new_user.email,
                    "full_name": new_user.full_name,
                    "password_hash": password_hash,
                    "is_admin": new_user.is_admin,
                    "is_auditor": new_user.is_auditor,
                },
            )
        except UniqueViolation as error:
            raise _email_taken_or(error) from error
        (user_id,) = await cursor.fetchone()  # type: ignore[misc]
    return UserView(user_id, new_user.email, new_user.full_name, new_user.is_admin, new_user.is_auditor, 1)


async def update_user(
    source: db.Source, passwords: Passwords, user_id: int, changes: UserChanges
) -> UserView:
    """Change some fields of a live user (granting or revoking a role is such a change).

    Raises UserNotFoundError, EmailTakenError, RoleConflictError, passwords.HashingBusyError.
    """
    password_hash = await passwords.hash(changes.password) if changes.password is not None else None
    async with db.connection(source) as conn:
        try:
            cursor = await conn.execute(
                UPDATE_USER,
                {
                    "user_id": user_id,
                    "email": changes.email,
                    "full_name": changes.full_name,
                    "password_hash": password_hash,
                    "is_admin": changes.is_admin,
                    "is_auditor": changes.is_auditor,
                },
            )
        except UniqueViolation as error:
            raise _email_taken_or(error) from error
        row = await cursor.fetchone()
    assert row is not None
    match row[0]:
        case "user_not_found":
            raise errors.UserNotFoundError()
        case "role_conflict":
            raise errors.RoleConflictError()
    return UserView(*row[1:])


async def delete_user(conn: AsyncConnection, acting_user_id: int, user_id: int) -> None:
    """Delete a live user (its events stay); raise CannotDeleteSelfError, UserNotFoundError."""
    if acting_user_id == user_id:
        raise errors.CannotDeleteSelfError()
    cursor = await conn.execute(DELETE_USER, {"user_id": user_id})
    row = await cursor.fetchone()
    if row != ("deleted",):
        raise errors.UserNotFoundError()


async def log_in(
    source: db.Source,
    passwords: Passwords,
    policy: LoginThrottle,
    attempt: LoginAttempt,
) -> LoginRecord:
    """Return the user whose email and password these are.

    The attempt is counted before any password is checked, so that neither a correct password
    during a lock-out nor concurrent guesses get past the limit. Raises TooManyAttemptsError,
    InvalidCredentialsError, passwords.HashingBusyError.
    """
    # The connection goes back to the pool before argon2 runs: under a burst of logins the
    # hashes wait for their turn, and connections held meanwhile would run the pool dry.
    async with db.connection(source) as conn:
        await throttle.count_login_attempt(conn, policy, attempt.email, attempt.client_address)
        record = await users.login_record(conn, attempt.email)
    # verify() spends the same time whether or not the email is known.
    matches = await passwords.verify(record.password_hash if record else None, attempt.password)
    if record is None or not matches:
        raise errors.InvalidCredentialsError()
    async with db.connection(source) as conn:
        await throttle.forget_login(conn, attempt.email, attempt.client_address)
    return record


async def receive_payment(conn: AsyncConnection, delivery: PaymentReceived) -> PaymentOutcome:
    """Credit a signed delivery once, ever; answer a re-delivery with the original result.

    One round trip: receive_payment() (sql/0022) is a single statement, its own transaction.
    Raises UserNotFoundError, AccountOwnerMismatchError, TransactionConflictError,
    SignatureReusedError, WebhookIdReusedError, BalanceLimitError.
    """
    assert not conn.info.transaction_status, "receive_payment runs as its own transaction"
    # The connection's kept cursor and a plain tuple, not a new class_row cursor as elsewhere:
    # a new cursor looks up its adapters again (see db.PooledConnection), and that row factory
    # reads the statement's column names on every execute, on the hottest path.
    amount = delivery.amount_value
    cursor = db.statement_cursor(conn)
    try:
        await cursor.execute(
            RECEIVE_PAYMENT,
            {
                "transaction_id": delivery.transaction_id,
                "user_id": delivery.user_id,
                "account_id": delivery.account_id,
                "amount": amount,
                "delivery": Jsonb(to_data(delivery)),
            },
        )
    except NumericValueOutOfRange as error:  # numeric(20,2): about 10^18
        raise errors.BalanceLimitError() from error
    except UniqueViolation as error:
        if error.diag.constraint_name != DELIVERY_KEYS_PKEY:
            raise
        raise _key_spent(delivery) from error
    row = await cursor.fetchone()
    assert row is not None
    return _payment_outcome(delivery, _ReceiveResult(*row))


# A batch's arrays go in binary (%b): in text, psycopg quotes and escapes each element of an
# array in Python, the deliveries' JSON above all.
RECEIVE_PAYMENTS = """
    SELECT ordinal, outcome, payment_id, user_id, account_id, amount, balance,
           refused_sqlstate, refused_constraint
    FROM receive_payments(%(transaction_ids)b, %(user_ids)b, %(account_ids)b, %(amounts)b, %(deliveries)b)
"""
DELIVERY_KEYS_PKEY = "delivery_keys_pkey"
NUMERIC_VALUE_OUT_OF_RANGE = "22003"
UNIQUE_VIOLATION = "23505"
# A delivery of a batch that lost a deadlock (or a serialization check) to another batch: it is
# received again on its own, as if it had come alone.
RETRY_ALONE = frozenset({"40P01", "40001", "55P03"})


class DeliveryFailedError(Exception):
    """A delivery (or a transfer) of a batch failed in the database for no reason its sender can
    be told: a bug, answered 500 for it alone."""


async def receive_payments(
    conn: AsyncConnection, deliveries: list[PaymentReceived]
) -> list[PaymentOutcome | Exception]:
    """Receive many deliveries in one statement and one commit; return each one's outcome, in
    order: what receive_payment() would return for it alone, or the error it would raise.

    The database receives each in a subtransaction of its own (receive_payments(),
    sql/definitions/40-payments.sql), so one delivery's failure never fails another.
    """
    assert not conn.info.transaction_status, "receive_payments runs as its own transaction"
    # One lock order for every batch: by account, then transaction id.
    order = sorted(
        range(len(deliveries)), key=lambda i: (deliveries[i].account_id, deliveries[i].transaction_id)
    )
    batch = [deliveries[i] for i in order]
    cursor = db.statement_cursor(conn)
    await cursor.execute(
        RECEIVE_PAYMENTS,
        {
            "transaction_ids": [d.transaction_id for d in batch],
            "user_ids": [d.user_id for d in batch],
            "account_ids": [d.account_id for d in batch],
            "amounts": [d.amount_value for d in batch],
            "deliveries": [Jsonb(to_data(d)) for d in batch],
        },
    )
    outcomes: list[PaymentOutcome | Exception | None] = [None] * len(deliveries)
    retries = []
    for ordinal, *received, sqlstate, constraint in await cursor.fetchall():
        index = order[ordinal - 1]
        delivery = deliveries[index]
        if sqlstate is None:
            outcomes[index] = _outcome_or_error(delivery, _ReceiveResult(*received))
        elif sqlstate in RETRY_ALONE:
            retries.append(index)
        elif sqlstate == NUMERIC_VALUE_OUT_OF_RANGE:
            outcomes[index] = errors.BalanceLimitError()
        elif sqlstate == UNIQUE_VIOLATION and constraint == DELIVERY_KEYS_PKEY:
            outcomes[index] = _key_spent(delivery)
        else:
            outcomes[index] = DeliveryFailedError(f"receive_payment failed with SQLSTATE {sqlstate}")
    for index in retries:
        outcomes[index] = await receive_payment_or_refusal(conn, deliveries[index])
    assert all(outcome is not None for outcome in outcomes), "a delivery of the batch got no row"
    return outcomes  # type: ignore[return-value]


async def receive_payment_or_refusal(
    conn: AsyncConnection, delivery: PaymentReceived
) -> PaymentOutcome | Exception:
    """receive_payment(), with its refusal returned instead of raised."""
    try:
        return await receive_payment(conn, delivery)
    except errors.LedgerError as refusal:
        return refusal


def _outcome_or_error(delivery: PaymentReceived, result: _ReceiveResult) -> PaymentOutcome | Exception:
    try:
        return _payment_outcome(delivery, result)
    except errors.LedgerError as refusal:
        return refusal


def _key_spent(delivery: PaymentReceived) -> errors.LedgerError:
    """The delivery's key is spent (sql/0021): a re-cut signature, or a replayed webhook-id."""
    return errors.WebhookIdReusedError() if delivery.is_standard_webhook else errors.SignatureReusedError()


def _payment_outcome(delivery: PaymentReceived, result: _ReceiveResult) -> PaymentOutcome:
    """Return what a delivery's row from receive_payment() means; raise its refusal."""
    match result.outcome:
        case "user_not_found":
            raise errors.UserNotFoundError()
        case "account_owner_mismatch":
            raise errors.AccountOwnerMismatchError()
        case "seen":
            differing = [
                name
                for name, recorded, sent in (
                    ("user_id", result.user_id, delivery.user_id),
                    ("account_id", result.account_id, delivery.account_id),
                    ("amount", result.amount, delivery.amount_value),
                )
                if recorded != sent
            ]
            if differing:
                raise errors.TransactionConflictError(
                    "This transaction_id was already used with another " + ", ".join(differing) + ".",
                    fields=differing,
                )
    assert result.balance is not None
    return PaymentOutcome(
        is_new=result.outcome == "credited",
        transaction_id=delivery.transaction_id,
        account_id=result.account_id,
        amount=result.amount,
        balance=result.balance,
    )


async def transfer_money(
    conn: AsyncConnection, user_id: int, idempotency_key: str, transfer: Transfer
) -> TransferOutcome:
    """Move money from one of the user's accounts to another user's account, once per key.

    One statement (transfer_money(), sql/definitions/50-money-movement.sql), its own
    transaction; a retry with the same key and body gets the original transfer. Raises
    SameAccountError, ForbiddenError (the source is not the user's), AccountNotFoundError,
    InsufficientFundsError, IdempotencyConflictError.
    """
    cursor = await conn.execute(
        TRANSFER_MONEY,
        {
            "user_id": user_id,
            "idempotency_key": idempotency_key,
            "from_account_id": transfer.from_account_id,
            "to_account_id": transfer.to_account_id,
            "amount": transfer.amount,
        },
    )
    row = await cursor.fetchone()
    assert row is not None
    outcome, *fields = row
    return _transfer_outcome(outcome, fields)


def _transfer_outcome(outcome: str, fields: list[Any]) -> TransferOutcome:
    """Return what a row of transfer_money() means; raise its refusal."""
    match outcome:
        case "same_account":
            raise errors.SameAccountError(field="to_account_id")
        case "not_yours":
            raise errors.ForbiddenError("The source account is not one of yours.")
        case "account_not_found":
            raise errors.AccountNotFoundError(field="to_account_id")
        case "insufficient_funds":
            raise errors.InsufficientFundsError()
        case "idempotency_conflict":
            raise errors.IdempotencyConflictError()
    return TransferOutcome(outcome == "created", *fields)


@dataclass(frozen=True)
class TransferRequest:
    """A transfer asked for with a token: its user and credentials version, checked by the
    statement that makes the transfer (a deleted user's or an outdated token's makes nothing)."""

    user_id: int
    credentials_version: int
    idempotency_key: str
    transfer: Transfer


MAKE_TRANSFERS = """
    SELECT ordinal, outcome, transfer_id, from_account_id, to_account_id, amount, created_at, refused_sqlstate
    FROM make_transfers(%(user_ids)b, %(credentials_versions)b, %(idempotency_keys)b,
                        %(from_account_ids)b, %(to_account_ids)b, %(amounts)b)
"""  # in binary, as RECEIVE_PAYMENTS


async def make_transfers(
    conn: AsyncConnection, requests: list[TransferRequest], *, retry_alone: bool = True
) -> list[TransferOutcome | Exception]:
    """Make many transfers in one statement and one commit (make_transfers(),
    sql/definitions/50-money-movement.sql); return each one's outcome, in order: what
    transfer_money() would return for it alone, or the refusal it would raise
    (UnauthenticatedError for a revoked token).

    A transfer that lost a deadlock or a lock wait to another batch is made again alone, once;
    should it lose again, its outcome is that error (answered 503: the client sends it again).
    """
    assert not conn.info.transaction_status, "make_transfers runs as its own transaction"
    cursor = db.statement_cursor(conn)
    await cursor.execute(
        MAKE_TRANSFERS,
        {
            "user_ids": [r.user_id for r in requests],
            "credentials_versions": [r.credentials_version for r in requests],
            "idempotency_keys": [r.idempotency_key for r in requests],
            "from_account_ids": [r.transfer.from_account_id for r in requests],
            "to_account_ids": [r.transfer.to_account_id for r in requests],
            "amounts": [r.transfer.amount for r in requests],
        },
    )
    outcomes: list[TransferOutcome | Exception | None] = [None] * len(requests)
    retries = []
    for ordinal, outcome, *fields, sqlstate in await cursor.fetchall():
        index = ordinal - 1
        if sqlstate is None:
            outcomes[index] = _transfer_outcome_or_refusal(outcome, fields)
        elif sqlstate in RETRY_ALONE and retry_alone:
            retries.append(index)
        elif sqlstate in RETRY_ALONE:
            outcomes[index] = psycopg.errors.lookup(sqlstate)(
                f"transfer_money lost a lock (SQLSTATE {sqlstate})"
            )
        elif sqlstate == NUMERIC_VALUE_OUT_OF_RANGE:
            outcomes[index] = errors.BalanceLimitError()
        else:
            outcomes[index] = DeliveryFailedError(f"transfer_money failed with SQLSTATE {sqlstate}")
    for index in retries:
        (outcomes[index],) = await make_transfers(conn, [requests[index]], retry_alone=False)
    assert all(outcome is not None for outcome in outcomes), "a transfer of the batch got no row"
    return outcomes  # type: ignore[return-value]


def _transfer_outcome_or_refusal(outcome: str, fields: list[Any]) -> TransferOutcome | Exception:
    if outcome == "revoked":
        return errors.UnauthenticatedError("The token was revoked.")
    try:
        return _transfer_outcome(outcome, fields)
    except errors.LedgerError as refusal:
        return refusal


async def reverse_payment(
    conn: AsyncConnection, user_id: int, idempotency_key: str, reversal: Reversal
) -> ReversalOutcome:
    """Take all or part of a payment back from its account (a refund, a chargeback), once per key.

    One statement (reverse_payment(), sql/definitions/50-money-movement.sql), its own
    transaction. Raises PaymentNotFoundError, ReversalExceedsPaymentError,
    IdempotencyConflictError.
    """
    cursor = await conn.execute(
        REVERSE_PAYMENT,
        {
            "user_id": user_id,
            "idempotency_key": idempotency_key,
            "payment_id": reversal.payment_id,
            "amount": reversal.amount,
            "reason": reversal.reason,
        },
    )
    row = await cursor.fetchone()
    assert row is not None
    outcome, *fields = row
    match outcome:
        case "payment_not_found":
            raise errors.PaymentNotFoundError()
        case "reversal_exceeds_payment":
            raise errors.ReversalExceedsPaymentError()
        case "idempotency_conflict":
            raise errors.IdempotencyConflictError()
    return ReversalOutcome(outcome == "created", *fields)


def _email_taken_or(error: UniqueViolation) -> Exception:
    """Return EmailTakenError for the unique index of live emails, else the error itself."""
    if error.diag.constraint_name == "users_live_email":
        return errors.EmailTakenError()
    return error
