"""Logging in: the one login for users and admins."""

from __future__ import annotations

from falcon.asgi import Request, Response
from psycopg_pool import AsyncConnectionPool

from ledger import commands
from ledger.http import parse, render
from ledger.http.auth import PUBLIC, Tokens
from ledger.passwords import Passwords


class Login:
    access = PUBLIC

    def __init__(self, pool: AsyncConnectionPool, passwords: Passwords, tokens: Tokens) -> None:
        self._pool = pool
        self._passwords = passwords
        self._tokens = tokens

    async def on_post(self, req: Request, resp: Response) -> None:
        email, password = parse.login(await parse.read_body(req))
        record = await commands.log_in(self._pool, self._passwords, email, password)
        resp.media = render.token(self._tokens.issue(record), self._tokens.ttl_s, record.id)
