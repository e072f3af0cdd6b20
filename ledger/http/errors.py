"""One place that turns every refusal into a JSON error: {"error": code, "message": text}.

LedgerError subclasses get their status from STATUS_OF; Falcon's own errors (no such route,
method not allowed) keep theirs; a lost database is 503; anything else is a bug: logged, 500.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import falcon
import psycopg
from psycopg_pool import PoolTimeout

from ledger import errors

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
    errors.InvalidSignatureError: 400,
    errors.InvalidAmountError: 422,
    errors.AccountOwnerMismatchError: 409,
    errors.TransactionConflictError: 409,
    errors.BalanceLimitError: 422,
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


async def handle_database_unavailable(req: Any, resp: Any, error: Exception, params: Any) -> None:
    log.error("database unavailable: %s", type(error).__name__)
    _render(resp, 503, "database_unavailable", "The database is unavailable; try again shortly.")
    resp.set_header("Retry-After", "1")


async def handle_bug(req: Any, resp: Any, error: Exception, params: Any) -> None:
    log.exception("unhandled error on %s %s", req.method, req.path)
    _render(resp, 500, "internal_error", "Something went wrong on our side.")


def register_error_handlers(app: falcon.asgi.App) -> None:
    """Register the handlers; the most specific exception class wins in Falcon."""
    app.add_error_handler(Exception, handle_bug)
    app.add_error_handler(falcon.HTTPError, handle_falcon_error)
    app.add_error_handler(errors.LedgerError, handle_ledger_error)
    app.add_error_handler(psycopg.OperationalError, handle_database_unavailable)
    app.add_error_handler(PoolTimeout, handle_database_unavailable)
