"""One place that turns every refusal into a JSON error: {"error": code, "message": text}.

LedgerError subclasses get their status from STATUS_OF; Falcon's own errors (no such route,
method not allowed) keep theirs; a lost database is 503; anything else is a bug: logged, 500.
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from typing import Any

import falcon
import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ledger import db, errors
from ledger.passwords import HashingBusyError

log = logging.getLogger(__name__)

STATUS_OF: dict[type[errors.LedgerError], int] = {
    errors.MalformedRequestError: 400,
    errors.InvalidFieldError: 422,
    errors.InvalidQueryError: 400,
    errors.BodyTooLargeError: 413,
    errors.InvalidCredentialsError: 401,
    errors.TooManyAttemptsError: 429,
    errors.UnauthenticatedError: 401,
    errors.ForbiddenError: 403,
    errors.EmailTakenError: 409,
    errors.UserNotFoundError: 404,
    errors.NotFoundError: 404,
    errors.CannotDeleteSelfError: 409,
    errors.RoleConflictError: 409,
    errors.InvalidSignatureError: 400,
    errors.InvalidAmountError: 422,
    errors.AccountOwnerMismatchError: 409,
    errors.TransactionConflictError: 409,
    errors.SignatureReusedError: 409,
    errors.WebhookIdReusedError: 409,
    errors.InvalidIdempotencyKeyError: 400,
    errors.AccountNotFoundError: 404,
    errors.SameAccountError: 422,
    errors.InsufficientFundsError: 422,
    errors.IdempotencyConflictError: 409,
    errors.PaymentNotFoundError: 404,
    errors.ReversalExceedsPaymentError: 422,
    errors.BalanceLimitError: 422,
}


# What the service answers 503 for (not a refusal: try again), each code with its message.
DATABASE_UNAVAILABLE = "database_unavailable"
DATABASE_BUSY = "database_busy"
NOT_REPLICATED = "not_replicated"
HASHING_BUSY = "busy"
OUTAGES: dict[str, str] = {
    DATABASE_UNAVAILABLE: "The database is unavailable; try again shortly.",
    DATABASE_BUSY: "The database took too long to answer; try again shortly.",
    NOT_REPLICATED: "The change is not yet safe on the standby database; send the same request again.",
    HASHING_BUSY: "The service is busy checking passwords; try again shortly.",
}


def _render(resp: falcon.asgi.Response, status: int, code: str, message: str, **details: Any) -> None:
    resp.status = status
    resp.media = {"error": code, "message": message, **details}


async def handle_ledger_error(req: Any, resp: Any, error: errors.LedgerError, params: Any) -> None:
    _render(resp, STATUS_OF[type(error)], error.code, error.message, **error.details)
    if isinstance(error, errors.UnauthenticatedError):
        resp.set_header("WWW-Authenticate", "Bearer")
    elif isinstance(error, errors.TooManyAttemptsError):
        resp.set_header("Retry-After", str(error.details["retry_after_s"]))


async def handle_falcon_error(req: Any, resp: Any, error: falcon.HTTPError, params: Any) -> None:
    phrase = HTTPStatus(error.status_code).phrase  # "Method Not Allowed" -> method_not_allowed
    _render(resp, error.status_code, "_".join(phrase.lower().split()), error.description or phrase + ".")
    if error.headers:  # Allow on a 405, for instance
        resp.set_headers(error.headers)


async def handle_statement_timeout(req: Any, resp: Any, error: Exception, params: Any) -> None:
    """A statement ran past the statement timeout and PostgreSQL cancelled it: busy, not a bug."""
    log.error("statement cancelled on %s %s: %s", req.method, req.path, type(error).__name__)
    _render(resp, 503, DATABASE_BUSY, OUTAGES[DATABASE_BUSY])
    resp.set_header("Retry-After", "1")


async def handle_commit_not_replicated(req: Any, resp: Any, error: Exception, params: Any) -> None:
    """A write committed on the primary but unconfirmed by its synchronous standby (ledger.db):
    not acknowledged. The same request again is safe: it moves no money twice."""
    _render(resp, 503, NOT_REPLICATED, OUTAGES[NOT_REPLICATED])
    resp.set_header("Retry-After", "1")


async def handle_hashing_busy(req: Any, resp: Any, error: Exception, params: Any) -> None:
    """Every password hashing job is taken and the queue is full (ledger.passwords)."""
    _render(resp, 503, HASHING_BUSY, OUTAGES[HASHING_BUSY])
    resp.set_header("Retry-After", "1")


class DatabaseUnavailable:
    """The handler of a lost database: 503, and a check of the pool's idle connections.

    After a database restart every idle connection in the pool is broken. The pool replaces
    one only when a request has failed on it; pool.check() (one at a time, in the background)
    finds the others at once, so one failed request is enough to renew the whole pool.
    """

    def __init__(self, pool: AsyncConnectionPool | None) -> None:
        self._pool = pool
        self._check: asyncio.Task[None] | None = None

    async def __call__(self, req: Any, resp: Any, error: Exception, params: Any) -> None:
        log.error("database unavailable: %s", type(error).__name__)
        _render(resp, 503, DATABASE_UNAVAILABLE, OUTAGES[DATABASE_UNAVAILABLE])
        resp.set_header("Retry-After", "1")
        if self._pool is not None and isinstance(error, psycopg.OperationalError) and not self._checking():
            self._check = asyncio.create_task(self._pool.check())

    def _checking(self) -> bool:
        return self._check is not None and not self._check.done()


async def handle_bug(req: Any, resp: Any, error: Exception, params: Any) -> None:
    log.exception("unhandled error on %s %s", req.method, req.path)
    _render(resp, 500, "internal_error", "Something went wrong on our side.")


def register_error_handlers(app: falcon.asgi.App, pool: AsyncConnectionPool | None = None) -> None:
    """Register the handlers; the most specific exception class wins in Falcon."""
    app.add_error_handler(Exception, handle_bug)
    app.add_error_handler(falcon.HTTPError, handle_falcon_error)
    app.add_error_handler(errors.LedgerError, handle_ledger_error)
    database_unavailable = DatabaseUnavailable(pool)
    app.add_error_handler(psycopg.OperationalError, database_unavailable)
    app.add_error_handler(PoolTimeout, database_unavailable)
    app.add_error_handler(psycopg.errors.QueryCanceled, handle_statement_timeout)
    app.add_error_handler(db.CommitNotReplicatedError, handle_commit_not_replicated)
    app.add_error_handler(HashingBusyError, handle_hashing_busy)
