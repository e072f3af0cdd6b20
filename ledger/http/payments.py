"""The payment provider's signed webhook."""

from __future__ import annotations

import falcon
from falcon.asgi import Request, Response
from psycopg_pool import AsyncConnectionPool

from ledger import commands, db, deliveries
from ledger.http import bodies, parse, render
from ledger.signatures import Webhooks


class PaymentWebhook:
    def __init__(self, pool: AsyncConnectionPool, webhooks: Webhooks) -> None:
        self._pool = pool
        self._webhooks = webhooks

    async def on_post(self, req: Request, resp: Response) -> None:
        # Authenticated by its signature, not a token.
        received = parse.payment_delivery(await bodies.read_body(req), req.get_header)
        delivery = deliveries.accepted(received, self._webhooks)
        async with db.connection(self._pool) as conn:
            outcome = await commands.receive_payment(conn, delivery)
        resp.status = falcon.HTTP_201 if outcome.is_new else falcon.HTTP_200
        resp.media = render.payment_outcome(outcome)
