"""Logging in: the one login for users and admins."""

from __future__ import annotations

from falcon.asgi import Request, Response
from psycopg_pool import AsyncConnectionPool

from ledger import commands
from ledger.config import LoginThrottle
from ledger.http import bodies, parse, render
from ledger.http.auth import Tokens
from ledger.passwords import Passwords


class Login:
    def __init__(
        self, pool: AsyncConnectionPool, passwords: Passwords, tokens: Tokens, throttle: LoginThrottle
    ) -> None:
        self._pool = pool
        self._passwords = passwords
        self._tokens = tokens
        self._throttle = throttle

    async def on_post(self, req: Request, resp: Response) -> None:
        email, password = parse.login(await bodies.read_body(req))
        # The address of the TCP peer (uvicorn puts a trusted proxy's X-Forwarded-For here).
        attempt = commands.LoginAttempt(email, password, req.remote_addr or "unknown")
        record = await commands.log_in(self._pool, self._passwords, self._throttle, attempt)
        resp.media = render.token(self._tokens.issue(record), self._tokens.ttl_s, record.id)
