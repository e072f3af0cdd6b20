"""Use cases, one async function each. Each owns its write transaction: the events it appends
and the projection rows they change commit together, or not at all.

Inputs arrive already validated (ledger.http.parse); what is refused here is refused by a rule
that needs the database, with a LedgerError subclass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from psycopg import AsyncConnection
from psycopg.errors import NumericValueOutOfRange, UniqueViolation
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from ledger import db, errors, login_throttle
from ledger.config import LoginThrottle
from ledger.events import PaymentReceived, UserDeleted, UserRegistered, UserUpdated, store
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
class PaymentOutcome:
    is_new: bool  # False: a re-delivery, answered with the original result
    transaction_id: str
    account_id: int
    amount: Decimal
    balance: Decimal


NEXT_USER_ID = "SELECT nextval('user_ids')"

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


async def register(conn: AsyncConnection, passwords: Passwords, new_user: NewUser) -> UserView:
    """Create a user (an admin only when an admin asks); raise EmailTakenError."""
    password_hash = await passwords.hash(new_user.password)
    async with conn.transaction():
        cursor = await conn.execute(NEXT_USER_ID)
        (user_id,) = await cursor.fetchone()  # type: ignore[misc]
        event = UserRegistered(
            user_id=user_id,
            email=new_user.email,
            full_name=new_user.full_name,
            password_hash=password_hash,
            is_admin=new_user.is_admin,
            is_auditor=new_user.is_auditor,
        )
        await _apply_user_event(conn, event)
        await store.append(conn, event)
    return UserView(user_id, new_user.email, new_user.full_name, new_user.is_admin, new_user.is_auditor, 1)


async def update_user(
    conn: AsyncConnection, passwords: Passwords, user_id: int, changes: UserChanges
) -> UserView:
    """Change some fields of a live user (granting or revoking a role is such a change).

    Raises UserNotFoundError, EmailTakenError, RoleConflictError.
    """
    password_hash = await passwords.hash(changes.password) if changes.password is not None else None
    async with conn.transaction():
        current = await users.live_user_for_update(conn, user_id)
        if current is None:
            raise errors.UserNotFoundError()
        is_admin = changes.is_admin if changes.is_admin is not None else current.is_admin
        is_auditor = changes.is_auditor if changes.is_auditor is not None else current.is_auditor
        if is_admin and is_auditor:
            raise errors.RoleConflictError()
        # A new password or another email revokes every token issued before.
        credentials_change = password_hash is not None or (
            changes.email is not None and changes.email != current.email
        )
        event = UserUpdated(
            user_id=user_id,
            credentials_version=current.credentials_version + credentials_change,
            email=changes.email,
            full_name=changes.full_name,
            password_hash=password_hash,
            is_admin=changes.is_admin,
            is_auditor=changes.is_auditor,
        )
        await _apply_user_event(conn, event)
        await store.append(conn, event)
    return UserView(
        id=user_id,
        email=changes.email if changes.email is not None else current.email,
        full_name=changes.full_name if changes.full_name is not None else current.full_name,
        is_admin=is_admin,
        is_auditor=is_auditor,
        credentials_version=event.credentials_version,
    )


async def delete_user(conn: AsyncConnection, acting_user_id: int, user_id: int) -> None:
    """Delete a live user (its events stay); raise CannotDeleteSelfError, UserNotFoundError."""
    if acting_user_id == user_id:
        raise errors.CannotDeleteSelfError()
    async with conn.transaction():
        # The row lock makes a concurrent payment to this user wait, or wait for it.
        if await users.live_user_for_update(conn, user_id) is None:
            raise errors.UserNotFoundError()
        event = UserDeleted(user_id=user_id)
        await users.apply(conn, event)
        await store.append(conn, event)


async def log_in(
    pool: AsyncConnectionPool,
    passwords: Passwords,
    throttle: LoginThrottle,
    attempt: LoginAttempt,
) -> LoginRecord:
    """Return the user whose email and password these are.

    Raises TooManyAttemptsError (before any password is checked, so a correct one does not
    get through a lock-out either), InvalidCredentialsError.
    """
    keys = login_throttle.Keys.of(attempt.email, attempt.client_address)
    # The connection goes back to the pool before argon2 runs: under a burst of logins the
    # hashes queue for threads for seconds, and connections held meanwhile ran the pool dry
    # (503s for logins and webhooks alike; seen in the bench's login scenario).
    async with db.connection(pool) as conn:
        email_failed = await login_throttle.refuse_if_locked(conn, throttle, keys)
        record = await users.login_record(conn, attempt.email)
    # verify() spends the same time whether or not the email is known.
    matches = await passwords.verify(record.password_hash if record else None, attempt.password)
    if record is None or not matches:
        async with db.connection(pool) as conn:
            await login_throttle.count_failure(conn, throttle, keys)
        raise errors.InvalidCredentialsError()
    if email_failed:
        async with db.connection(pool) as conn:
            await login_throttle.forget_failures(conn, keys)
    return record


async def receive_payment(conn: AsyncConnection, delivery: PaymentReceived) -> PaymentOutcome:
    """Credit a signed delivery once, ever; answer a re-delivery with the original result.

    One round trip: receive_payment() (sql/0003) is a single statement, its own transaction.
    Raises UserNotFoundError, AccountOwnerMismatchError, TransactionConflictError,
    BalanceLimitError.
    """
    assert not conn.info.transaction_status, "receive_payment runs as its own transaction"
    # The connection's kept cursor and a plain tuple, not a new class_row cursor as elsewhere:
    # a new cursor looks up its adapters again (see db.PooledConnection), and that row factory
    # reads the statement's column names on every execute (8% and 4% of a delivery's
    # instructions through the app, callgrind), on the hottest path.
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
    row = await cursor.fetchone()
    assert row is not None
    result = _ReceiveResult(*row)
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
                    ("amount", result.amount, amount),
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


async def _apply_user_event(conn: AsyncConnection, event: UserRegistered | UserUpdated) -> None:
    """Apply a user event to the users view, before it is appended.

    The order matters: this is where the statement may wait on the unique email index for
    another transaction (one that frees or takes the email). Appending only afterwards draws
    the event's position after that transaction committed, so the log's order is one in
    which a replay can apply every event: appending first could put a registration before
    the deletion that freed its email.
    """
    try:
        await users.apply(conn, event)
    except UniqueViolation as error:
        if error.diag.constraint_name == "users_live_email":
            raise errors.EmailTakenError() from error
        raise
