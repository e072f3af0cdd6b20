"""The app factory: every route, the middleware and the error handlers, wired in one place."""

from __future__ import annotations

from typing import Any

import falcon
import falcon.asgi
import falcon.media
import simplejson
from psycopg_pool import AsyncConnectionPool

from ledger import db
from ledger.config import Settings
from ledger.http import audit, health, observe, openapi, parse, payments, session, users
from ledger.http.auth import ADMIN, PUBLIC, Authentication, Tokens
from ledger.http.errors import register_error_handlers
from ledger.passwords import Passwords


class PoolLifespan:
    """Falcon middleware: open the pool when the server starts, close it when it stops.

    In the ASGI lifespan, so that the pool lives in the server's event loop and closes before
    uvicorn hands a Ctrl-C back to the process.
    """

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def process_startup(self, scope: object, event: object) -> None:
        await self._pool.open(wait=True)

    async def process_shutdown(self, scope: object, event: object) -> None:
        await self._pool.close()


def create_app(
    settings: Settings, pool: AsyncConnectionPool, *, pool_lifespan: bool = True
) -> falcon.asgi.App:
    """Return the ASGI app serving the contract from pool.

    With pool_lifespan, the app opens and closes the pool with the server; without it (tests
    that share one pool), the caller does.
    """
    passwords = Passwords.of(settings.argon2, settings.password_hashing)
    tokens = Tokens(settings.jwt_secret, settings.token_ttl_s)
    metrics = observe.Metrics(pool)
    middleware: list[Any] = [PoolLifespan(pool)] if pool_lifespan else []
    middleware.append(observe.Telemetry(metrics))  # first: it times and logs what follows
    middleware.append(Authentication(pool, tokens))
    app = falcon.asgi.App(middleware=middleware)

    # Decimal leaves as an exact JSON number (use_decimal); request bodies are parsed by
    # ledger.http.parse, never by this handler. One encoder for the app: simplejson.dumps with
    # options builds a new one for every answer (30% of the time it takes to write one).
    encoder = simplejson.JSONEncoder(use_decimal=True, separators=(",", ":"))
    json_handler = falcon.media.JSONHandler(dumps=encoder.encode)
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    register_error_handlers(app, pool)

    def route(paths: tuple[str, ...], resource: object) -> None:
        for path in paths:
            app.add_route(path, resource)

    route(("/login",), session.Login(pool, passwords, tokens, settings.login_throttle))
    route(
        ("/register",),
        users.UserCreation(
            pool,
            passwords,
            access=PUBLIC,
            parse_body=parse.registration,
            throttle=settings.registration_throttle,
        ),
    )
    route(("/user/about",), users.About())
    route(("/user/accounts",), users.MyAccounts(pool))
    route(("/users/payments", "/user/payments"), users.MyPayments(pool))
    route(("/users", "/admin/users", "/audit/users"), users.UserList(pool))
    route(
        ("/users/create", "/admin/users/create"),
        users.UserCreation(pool, passwords, access=ADMIN, parse_body=parse.new_user),
    )
    route(("/users/update/{user_id}", "/admin/users/update/{user_id}"), users.UserUpdate(pool, passwords))
    route(("/users/delete/{user_id}", "/admin/users/delete/{user_id}"), users.UserDeletion(pool))
    route(("/webhook/payment",), payments.PaymentWebhook(pool, settings.webhooks))
    route(("/events",), audit.EventFeed(pool))
    route(("/audit/summary",), audit.AuditSummary(pool))
    route(("/audit/payments",), audit.AllPayments(pool))
    route(("/healthz",), health.Health())
    route(("/readyz",), health.Readiness(pool, db.migration_hashes(settings.migrations_dir)))
    route(("/metrics",), observe.MetricsEndpoint(metrics))
    route(("/openapi.json",), openapi.OpenApiDocument(openapi.document()))
    route(("/docs",), openapi.DocsPage())
    route(("/docs/docs.js",), openapi.DocsScript())
    app.add_static_route("/docs/assets", str(openapi.swagger_ui_directory()))
    return app
