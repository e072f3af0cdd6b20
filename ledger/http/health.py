"""Liveness and readiness, for container health checks and load balancers."""

from __future__ import annotations

from falcon.asgi import Request, Response
from psycopg_pool import AsyncConnectionPool

from ledger import db

# A readiness probe must answer soon, whatever the pool's own timeout.
READY_TIMEOUT_S = 2.0


class Health:
    """The process is alive (for container health checks); touches nothing."""

    async def on_get(self, req: Request, resp: Response) -> None:
        resp.media = {"status": "ok"}


class Readiness:
    """The database answers and every migration of this release is applied: one query.

    A lost database is the error handlers' 503 `database_unavailable`; pending migrations are
    503 `migrations_pending`.
    """

    def __init__(self, pool: AsyncConnectionPool, migration_hashes: frozenset[str]) -> None:
        self._pool = pool
        self._migration_hashes = migration_hashes

    async def on_get(self, req: Request, resp: Response) -> None:
        async with self._pool.connection(timeout=READY_TIMEOUT_S) as conn:
            applied = await db.applied_migration_hashes(conn)
        pending = len(self._migration_hashes - applied)
        if pending:
            resp.status = 503
            resp.media = {
                "error": "migrations_pending",
                "message": f"{pending} migration(s) not applied yet.",
            }
        else:
            resp.media = {"status": "ready"}
