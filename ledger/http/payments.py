"""The payment provider's signed webhook."""

from __future__ import annotations

from collections.abc import Sequence

import falcon
from falcon.asgi import Request, Response
from psycopg_pool import AsyncConnectionPool

from ledger import commands, db
from ledger.http import parse, render
from ledger.http.auth import PUBLIC


class PaymentWebhook:
    access = PUBLIC  # authenticated by its signature, not a token

    def __init__(self, pool: AsyncConnectionPool, secrets: Sequence[bytes]) -> None:
        self._pool = pool
        self._secrets = secrets

    async def on_post(self, req: Request, resp: Response) -> None:
        delivery = parse.payment_delivery(await parse.read_body(req), self._secrets)
        async with db.connection(self._pool) as conn:
            outcome = await commands.receive_payment(conn, delivery)
        resp.status = falcon.HTTP_201 if outcome.is_new else falcon.HTTP_200
        resp.media = render.payment_outcome(outcome)
