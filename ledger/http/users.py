"""The user's own data, and the admins' user management."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

import falcon
from falcon.asgi import Request, Response
from psycopg_pool import AsyncConnectionPool

from ledger import commands, db
from ledger.commands import NewUser
from ledger.config import RequestThrottle
from ledger.http import auth, bodies, parse, render
from ledger.passwords import Passwords
from ledger.projections import accounts, past, users

BIGINT_MAX = bodies.BIGINT_MAX


def link_next(req: Request, resp: Response, limit: int, after: int) -> None:
    """Point to the next page: the same query (as_of, user_id, ...) continuing after that id."""
    kept = [(name, value) for name, value in req.params.items() if name not in ("limit", "after")]
    query = urlencode([*kept, ("limit", limit), ("after", after)], doseq=True)
    # Written by hand: the contract quotes rel="next", which falcon's append_link does not.
    resp.set_header("Link", f'<{req.path}?{query}>; rel="next"')


class About:
    async def on_get(self, req: Request, resp: Response) -> None:
        resp.media = render.user(req.context.user)


class MyAccounts:
    checks_revocation = True  # one statement reads the accounts and checks the token's user

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def on_get(self, req: Request, resp: Response) -> None:
        claims = req.context.claims
        cut = parse.as_of(req.get_param("as_of"))
        async with db.connection(self._pool) as conn:
            if cut is None:
                found = await accounts.accounts_of_live_user(conn, claims.user_id, claims.credentials_version)
            else:
                found = await past.accounts_of_live_user_at(
                    conn, claims.user_id, claims.credentials_version, cut
                )
        resp.media = [render.account(view) for view in auth.revoked_unless_found(found)]


class MyPayments:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def on_get(self, req: Request, resp: Response) -> None:
        limit, after = parse.page(req.get_param("limit"), req.get_param("after"))
        # Newest first: the next page continues below the last id shown.
        before = BIGINT_MAX if after is None else after
        async with db.connection(self._pool) as conn:
            views = await accounts.payments_page(conn, req.context.user.id, before, limit + 1)
        if len(views) > limit:
            views = views[:limit]
            link_next(req, resp, limit, views[-1].id)
        resp.media = [render.payment(view) for view in views]


class UserList:
    """GET /users: every live user with accounts and balances, now or ?as_of= a past cut of
    the log (computed from the events). For admins and auditors."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def on_get(self, req: Request, resp: Response) -> None:
        limit, after = parse.page(req.get_param("limit"), req.get_param("after"))
        cut = parse.as_of(req.get_param("as_of"))
        async with db.connection(self._pool) as conn:
            if cut is None:
                views = await users.users_page(conn, after or 0, limit + 1)
            else:
                views = await past.users_page_at(conn, cut, after or 0, limit + 1)
            if len(views) > limit:
                views = views[:limit]
                link_next(req, resp, limit, views[-1].id)
            user_ids = [view.id for view in views]
            if cut is None:
                owned = await accounts.accounts_of_users(conn, user_ids)
            else:
                owned = await past.accounts_of_users_at(conn, user_ids, cut)
        resp.media = [
            render.user_with_accounts(view, [a for a in owned if a.user_id == view.id]) for view in views
        ]


class UserCreation:
    """POST /register (public, throttled per client address; never an admin) and the admins'
    POST /users/create."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        passwords: Passwords,
        *,
        parse_body: Callable[[bytes], NewUser],
        throttle: RequestThrottle | None = None,
    ) -> None:
        self._pool = pool
        self._passwords = passwords
        self._parse_body = parse_body
        self._throttle = throttle

    async def on_post(self, req: Request, resp: Response) -> None:
        new_user = self._parse_body(await bodies.read_body(req))
        # The address of the TCP peer (uvicorn puts a trusted proxy's X-Forwarded-For here).
        registration = (
            None
            if self._throttle is None
            else commands.Registration(req.remote_addr or "unknown", self._throttle)
        )
        user = await commands.register(self._pool, self._passwords, new_user, registration)
        resp.status = falcon.HTTP_201
        resp.media = render.user(user)


class UserUpdate:
    def __init__(self, pool: AsyncConnectionPool, passwords: Passwords) -> None:
        self._pool = pool
        self._passwords = passwords

    async def on_put(self, req: Request, resp: Response, user_id: str) -> None:
        target_id = parse.user_id(user_id)
        changes = parse.user_changes(await bodies.read_body(req))
        user = await commands.update_user(self._pool, self._passwords, target_id, changes)
        resp.media = render.user(user)


class UserDeletion:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def on_delete(self, req: Request, resp: Response, user_id: str) -> None:
        target_id = parse.user_id(user_id)
        async with db.connection(self._pool) as conn:
            await commands.delete_user(conn, req.context.user.id, target_id)
        resp.media = {"message": "User deleted successfully"}
