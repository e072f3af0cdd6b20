"""Every route, declared once: its path and aliases, who may call it, the resource that serves
it, and what /openapi.json says of it. create_app() serves this table, openapi.document()
describes it, and the Authentication middleware enforces its access.

To add a route: a resource class in the module of its noun (parse, call, render), then one
Route here. Its request body, if any, is a Body of ledger.http.bodies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from ledger import db, errors
from ledger.config import Settings
from ledger.group_commit import PaymentsGroupCommit, TransfersGroupCommit
from ledger.http import audit, bodies, docs, health, money, observe, openapi, parse, payments, session, users
from ledger.http.auth import ADMIN, AUDIT, PUBLIC, USER, Tokens
from ledger.http.openapi import (
    Operation,
    answer,
    as_of_parameter,
    cursor_parameter,
    id_parameter,
    idempotency_key_parameter,
    page_of,
    page_parameters,
    ref,
    standard_webhooks_headers,
)
from ledger.passwords import Passwords


@dataclass(frozen=True)
class Wiring:
    """What the resources are built with: one of each per app."""

    settings: Settings
    pool: AsyncConnectionPool
    passwords: Passwords
    tokens: Tokens
    metrics: observe.Metrics
    # The auditors' reads (the feed, /audit/*): a replica's pool when LEDGER_REPLICA_URL is
    # set, else `pool`. Reads of one's own data stay on `pool`, which has every write.
    audit_pool: AsyncConnectionPool
    group_commit: PaymentsGroupCommit  # the webhook's deliveries, recorded together (ledger.group_commit)
    transfers: TransfersGroupCommit  # the transfers, likewise


@dataclass(frozen=True)
class Route:
    paths: tuple[str, ...]  # the contract's path first, then its aliases
    access: str  # PUBLIC, USER, AUDIT or ADMIN (ledger.http.auth)
    resource: Callable[[Wiring], object]
    operations: Mapping[str, Operation]  # by method, lower case; none: not in the document


READ_REFUSALS = (errors.InvalidQueryError,)

ROUTES: tuple[Route, ...] = (
    Route(
        ("/login",),
        PUBLIC,
        lambda w: session.Login(w.pool, w.passwords, w.tokens, w.settings.login_throttle),
        {
            "post": Operation(
                "logIn",
                "Log in (users and admins alike)",
                "session",
                {"200": answer("A bearer token.", ref("Token"))},
                refusals=(errors.InvalidCredentialsError, errors.TooManyAttemptsError),
                body=bodies.LOGIN,
                hashes_passwords=True,
            )
        },
    ),
    Route(
        ("/register",),
        PUBLIC,
        lambda w: users.UserCreation(
            w.pool, w.passwords, parse_body=parse.registration, throttle=w.settings.registration_throttle
        ),
        {
            "post": Operation(
                "register",
                "Register a user (never an admin)",
                "users",
                {"201": answer("The new user.", ref("User"))},
                refusals=(errors.EmailTakenError, errors.TooManyAttemptsError),
                body=bodies.REGISTRATION,
                hashes_passwords=True,
            )
        },
    ),
    Route(
        ("/user/about",),
        USER,
        lambda w: users.About(),
        {
            "get": Operation(
                "aboutMe", "The caller", "users", {"200": answer("The token's user.", ref("User"))}
            )
        },
    ),
    Route(
        ("/user/accounts",),
        USER,
        lambda w: users.MyAccounts(w.pool),
        {
            "get": Operation(
                "myAccounts",
                "The caller's accounts, by id",
                "users",
                {"200": answer("Every account.", {"type": "array", "items": ref("Account")})},
                refusals=READ_REFUSALS,
                parameters=(as_of_parameter(),),
            )
        },
    ),
    Route(
        ("/users/payments", "/user/payments"),
        USER,
        lambda w: users.MyPayments(w.pool),
        {
            "get": Operation(
                "myPayments",
                "The caller's payments, newest first",
                "users",
                {"200": page_of("Payment")},
                refusals=READ_REFUSALS,
                parameters=page_parameters(),
            )
        },
    ),
    Route(
        ("/users", "/admin/users", "/audit/users"),
        AUDIT,
        lambda w: users.UserList(w.pool),
        {
            "get": Operation(
                "listUsers",
                "Every user with accounts and balances, by id (admins and auditors)",
                "admins",
                {"200": page_of("UserWithAccounts")},
                refusals=READ_REFUSALS,
                parameters=(*page_parameters(), as_of_parameter()),
            )
        },
    ),
    Route(
        ("/users/create", "/admin/users/create"),
        ADMIN,
        lambda w: users.UserCreation(w.pool, w.passwords, parse_body=parse.new_user),
        {
            "post": Operation(
                "createUser",
                "Create a user or an admin",
                "admins",
                {"201": answer("The new user.", ref("User"))},
                refusals=(errors.EmailTakenError, errors.RoleConflictError),
                body=bodies.NEW_USER,
                hashes_passwords=True,
            )
        },
    ),
    Route(
        ("/users/update/{user_id}", "/admin/users/update/{user_id}"),
        ADMIN,
        lambda w: users.UserUpdate(w.pool, w.passwords),
        {
            "put": Operation(
                "updateUser",
                "Change a user's email, name, password or admin right",
                "admins",
                {"200": answer("The updated user.", ref("User"))},
                refusals=(errors.UserNotFoundError, errors.EmailTakenError, errors.RoleConflictError),
                parameters=(id_parameter("user_id", "path"),),
                body=bodies.USER_CHANGES,
                hashes_passwords=True,
            )
        },
    ),
    Route(
        ("/users/delete/{user_id}", "/admin/users/delete/{user_id}"),
        ADMIN,
        lambda w: users.UserDeletion(w.pool),
        {
            "delete": Operation(
                "deleteUser",
                "Delete a user (its events stay in the log)",
                "admins",
                {"200": answer("Deleted.", ref("Deleted"))},
                refusals=(errors.UserNotFoundError, errors.CannotDeleteSelfError),
                parameters=(id_parameter("user_id", "path"),),
            )
        },
    ),
    Route(
        ("/webhook/payment",),
        PUBLIC,  # authenticated by its signature, not a token
        lambda w: payments.PaymentWebhook(w.group_commit, w.settings.webhooks),
        {
            "post": Operation(
                "receivePayment",
                "The payment provider's signed delivery",
                "webhook",
                {
                    "201": answer("Credited.", ref("PaymentOutcome")),
                    "200": answer("Already processed: the original answer.", ref("PaymentOutcome")),
                },
                refusals=(
                    errors.InvalidSignatureError,
                    errors.InvalidAmountError,
                    errors.BalanceLimitError,
                    errors.UserNotFoundError,
                    errors.AccountOwnerMismatchError,
                    errors.TransactionConflictError,
                    errors.SignatureReusedError,
                    errors.WebhookIdReusedError,
                ),
                parameters=standard_webhooks_headers(),
                body=bodies.DELIVERY,
            )
        },
    ),
    Route(
        ("/transfers",),
        USER,
        lambda w: money.Transfers(w.transfers),
        {
            "post": Operation(
                "makeTransfer",
                "Move money from one of the caller's accounts to another user's account",
                "money",
                {
                    "201": answer("Transferred.", ref("Transfer")),
                    "200": answer(
                        "Already done with this Idempotency-Key: the original transfer.", ref("Transfer")
                    ),
                },
                refusals=(
                    errors.InvalidIdempotencyKeyError,
                    errors.InvalidAmountError,
                    errors.ForbiddenError,
                    errors.SameAccountError,
                    errors.InsufficientFundsError,
                    errors.AccountNotFoundError,
                    errors.IdempotencyConflictError,
                ),
                parameters=(idempotency_key_parameter(),),
                body=bodies.TRANSFER,
            )
        },
    ),
    Route(
        ("/payments/{payment_id}/reversals",),
        ADMIN,
        lambda w: money.Reversals(w.pool),
        {
            "post": Operation(
                "reversePayment",
                "Reverse all or part of a received payment: a refund or a chargeback (admins)",
                "money",
                {
                    "201": answer("Reversed.", ref("Reversal")),
                    "200": answer(
                        "Already done with this Idempotency-Key: the original reversal.", ref("Reversal")
                    ),
                },
                refusals=(
                    errors.InvalidIdempotencyKeyError,
                    errors.InvalidAmountError,
                    errors.PaymentNotFoundError,
                    errors.ReversalExceedsPaymentError,
                    errors.IdempotencyConflictError,
                ),
                parameters=(id_parameter("payment_id", "path"), idempotency_key_parameter()),
                body=bodies.REVERSAL,
            )
        },
    ),
    Route(
        ("/user/accounts/{account_id}/postings",),
        USER,
        lambda w: money.AccountPostings(w.pool),
        {
            "get": Operation(
                "accountPostings",
                "An account's postings, newest first (its owner; admins and auditors for any account)",
                "money",
                {"200": page_of("Posting")},
                refusals=(errors.InvalidQueryError, errors.AccountNotFoundError),
                parameters=(id_parameter("account_id", "path"), *page_parameters()),
            )
        },
    ),
    Route(
        ("/audit/trial-balance",),
        AUDIT,
        lambda w: audit.TrialBalance(w.audit_pool),
        {
            "get": Operation(
                "trialBalance",
                "Every kind of account's balance and their total, which is 0.00 (admins and auditors)",
                "audit",
                {"200": answer("The trial balance.", ref("TrialBalance"))},
                refusals=READ_REFUSALS,
                parameters=(as_of_parameter(),),
            )
        },
    ),
    Route(
        ("/events",),
        AUDIT,
        lambda w: audit.EventFeed(w.audit_pool),
        {
            "get": Operation(
                "listEvents",
                "The event log in feed order: never a gap, never an event twice (admins and auditors)",
                "audit",
                {"200": answer("A page of the feed.", ref("EventPage"))},
                refusals=READ_REFUSALS,
                parameters=(page_parameters()[0], cursor_parameter("after", "Continue after this cursor.")),
            )
        },
    ),
    Route(
        ("/audit/summary",),
        AUDIT,
        lambda w: audit.AuditSummary(w.audit_pool),
        {
            "get": Operation(
                "auditSummary",
                "The balance checksum, to compare with an independent replay (admins and auditors)",
                "audit",
                {"200": answer("The balances in one figure.", ref("BalanceSummary"))},
                refusals=READ_REFUSALS,
                parameters=(cursor_parameter("through", "Compute from the log up to this cursor."),),
            )
        },
    ),
    Route(
        ("/audit/payments",),
        AUDIT,
        lambda w: audit.AllPayments(w.audit_pool),
        {
            "get": Operation(
                "auditPayments",
                "Every user's payments, newest first (admins and auditors)",
                "audit",
                {"200": page_of("AuditedPayment")},
                refusals=READ_REFUSALS,
                parameters=(*page_parameters(), id_parameter("user_id", "query", "Only this user's.")),
            )
        },
    ),
    Route(
        ("/healthz",),
        PUBLIC,
        lambda w: health.Health(),
        {
            "get": Operation(
                "health",
                "The process is alive (touches nothing)",
                "operations",
                {"200": answer("Alive.", ref("Health"))},
                uses_database=False,
            )
        },
    ),
    Route(
        ("/readyz",),
        PUBLIC,
        lambda w: health.Readiness(w.pool, db.migration_hashes(w.settings.migrations_dir)),
        {
            "get": Operation(
                "readiness",
                "The database answers and every migration is applied",
                "operations",
                {
                    "200": answer("Ready.", ref("Ready")),
                    "503": answer(
                        "`database_unavailable`: the database cannot be reached. `migrations_pending`: this "
                        "release's schema is not there yet.",
                        ref("Error"),
                    ),
                },
            )
        },
    ),
    Route(
        ("/metrics",),
        PUBLIC,  # like /healthz: for the monitoring on the inside network, holds no user data
        lambda w: observe.MetricsEndpoint(w.metrics),
        {
            "get": Operation(
                "metrics",
                "This process's metrics in Prometheus's text format",
                "operations",
                {
                    "200": {
                        "description": "Prometheus text.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
                uses_database=False,
            )
        },
    ),
    Route(
        ("/openapi.json",),
        PUBLIC,
        lambda w: docs.OpenApiDocument(openapi.document(ROUTES)),
        {
            "get": Operation(
                "openapi",
                "This document",
                "operations",
                {"200": answer("OpenAPI 3.1.", {"type": "object", "required": ["openapi", "paths"]})},
                uses_database=False,
            )
        },
    ),
    Route(("/docs",), PUBLIC, lambda w: docs.DocsPage(), {}),
    Route(("/docs/docs.js",), PUBLIC, lambda w: docs.DocsScript(), {}),
)


def access_of(routes: tuple[Route, ...] = ROUTES) -> dict[str, str]:
    """Return the access of every path of the table (aliases included), by path template."""
    return {path: route.access for route in routes for path in route.paths}
