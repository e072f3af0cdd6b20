"""The payment provider's signed webhook."""

from __future__ import annotations

import falcon
from falcon.asgi import Request, Response
from psycopg_pool import AsyncConnectionPool

from ledger import commands, db
from ledger.http import parse, render
from ledger.http.auth import PUBLIC
from ledger.signatures import Webhooks


class PaymentWebhook:
    access = PUBLIC  # authenticated by its signature, not a token

    def __init__(self, pool: AsyncConnectionPool, webhooks: Webhooks) -> None:
        self._pool = pool
        self._webhooks = webhooks

    async def on_post(self, req: Request, resp: Response) -> None:
        raw = await parse.read_body(req)
        delivery = parse.payment_delivery(
            raw, parse.StandardWebhookHeaders.of(req.get_header), self._webhooks
        )
        async with db.connection(self._pool) as conn:
            outcome = await commands.receive_payment(conn, delivery)
        resp.status = falcon.HTTP_201 if outcome.is_new else falcon.HTTP_200
        resp.media = render.payment_outcome(outcome)
