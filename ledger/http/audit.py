"""What auditors (and admins) read: the event feed, the balance summary, everyone's payments."""

from __future__ import annotations

from falcon.asgi import Request, Response
from psycopg import IsolationLevel
from psycopg_pool import AsyncConnectionPool

from ledger import db
from ledger.audit import checksums, feed, trial_balance
from ledger.http import bodies, parse, render
from ledger.http.users import link_next
from ledger.projections import accounts


class EventFeed:
    """GET /events?after=<cursor>&limit=<n>: the log in feed order (ledger.events.feed)."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def on_get(self, req: Request, resp: Response) -> None:
        limit, _ = parse.page(req.get_param("limit"), None)
        after = parse.cursor(req.get_param("after"))
        async with db.connection(self._pool) as conn:
            events = await feed.page(conn, after, limit)
        resp.media = render.feed_page(events, after)


class AuditSummary:
    """GET /audit/summary[?through=<cursor>]: the balance checksum to compare with a replay.

    Without through: the balances the service shows now, and the feed's head read in the same
    snapshot. With through: the balances of the feed up to that cursor, computed from the log,
    which is what `ledger replay --from` prints for an export that ends there.
    """

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def on_get(self, req: Request, resp: Response) -> None:
        through = req.get_param("through")
        async with db.connection(self._pool) as conn:
            if through is not None:
                cursor = parse.cursor(through)
                summary = await checksums.feed_prefix_balance_summary(conn, cursor)
                resp.media = render.balance_summary(summary, cursor, source="log")
                return
            await conn.set_isolation_level(IsolationLevel.REPEATABLE_READ)
            try:
                async with conn.transaction():
                    head = await checksums.feed_head(conn)
                    summary = await checksums.live_balance_summary(conn)
            finally:
                await conn.set_isolation_level(None)
        resp.media = render.balance_summary(summary, head.cursor, source="projections")


class AllPayments:
    """GET /audit/payments[?user_id=]: every user's payments, newest first, paged like the rest."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def on_get(self, req: Request, resp: Response) -> None:
        limit, after = parse.page(req.get_param("limit"), req.get_param("after"))
        user_id = req.get_param("user_id")
        owner = None if user_id is None else parse.query_id("user_id", user_id)
        before = bodies.BIGINT_MAX if after is None else after
        async with db.connection(self._pool) as conn:
            views = await accounts.all_payments_page(conn, owner, before, limit + 1)
        if len(views) > limit:
            views = views[:limit]
            link_next(req, resp, limit, views[-1].id)
        resp.media = [render.audited_payment(view) for view in views]


class TrialBalance:
    """GET /audit/trial-balance[?as_of=]: every kind of account's balance, and the total (0.00)."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def on_get(self, req: Request, resp: Response) -> None:
        as_of = req.get_param("as_of")
        cut = parse.as_of(as_of)
        async with db.connection(self._pool) as conn:
            balance = await trial_balance.trial_balance(conn, cut)
        resp.media = render.trial_balance(balance, as_of)
