"""The app factory: the route table (ledger.http.routes), the middleware and the error
handlers, wired in one place."""

from __future__ import annotations

from typing import Any

import falcon
import falcon.asgi
import falcon.media
import simplejson
from psycopg_pool import AsyncConnectionPool

from ledger import commands
from ledger.config import Settings
from ledger.group_commit import GroupCommit
from ledger.http import docs, observe, routes
from ledger.http.auth import Authentication, Tokens
from ledger.http.errors import register_error_handlers
from ledger.passwords import Passwords


class PoolLifespan:
    """Falcon middleware: open the pools when the server starts, close them when it stops.

    In the ASGI lifespan, so that the pools live in the server's event loop and close before
    uvicorn hands a Ctrl-C back to the process.
    """

    def __init__(self, *pools: AsyncConnectionPool) -> None:
        self._pools = pools

    async def process_startup(self, scope: object, event: object) -> None:
        for pool in self._pools:
            await pool.open(wait=True)

    async def process_shutdown(self, scope: object, event: object) -> None:
        for pool in self._pools:
            await pool.close()


def create_app(
    settings: Settings,
    pool: AsyncConnectionPool,
    *,
    audit_pool: AsyncConnectionPool | None = None,
    pool_lifespan: bool = True,
) -> falcon.asgi.App:
    """Return the ASGI app serving every route of ledger.http.routes from pool.

    audit_pool (a replica's) serves the auditors' reads; without it, pool does. With
    pool_lifespan, the app opens and closes the pools with the server; without it (tests that
    share one pool), the caller does.
    """
    tokens = Tokens(settings.jwt_secret, settings.token_ttl_s)
    metrics = observe.Metrics(pool)
    wiring = routes.Wiring(
        settings,
        pool,
        Passwords.of(settings.argon2, settings.password_hashing),
        tokens,
        metrics,
        audit_pool or pool,
        GroupCommit(pool, settings.webhook_batch_max),
        GroupCommit(pool, settings.transfer_batch_max, record=commands.make_transfers),
    )
    pools = [pool] if audit_pool is None else [pool, audit_pool]
    middleware: list[Any] = [PoolLifespan(*pools)] if pool_lifespan else []
    middleware.append(observe.Telemetry(metrics))  # first: it times and logs what follows
    middleware.append(Authentication(pool, tokens, routes.access_of()))
    app = falcon.asgi.App(middleware=middleware)

    # Decimal leaves as an exact JSON number (use_decimal); request bodies are read by
    # ledger.http.bodies, never by this handler. One encoder for the app: simplejson.dumps
    # with options would build a new one for every answer.
    encoder = simplejson.JSONEncoder(use_decimal=True, separators=(",", ":"))
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = falcon.media.JSONHandler(dumps=encoder.encode)
    register_error_handlers(app, pool)

    for route in routes.ROUTES:
        resource = route.resource(wiring)
        for path in route.paths:
            app.add_route(path, resource)
    app.add_static_route("/docs/assets", str(docs.swagger_ui_directory()))  # public: the /docs page's
    return app
