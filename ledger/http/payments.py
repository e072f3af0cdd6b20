"""The payment provider's signed webhook."""

from __future__ import annotations

import falcon
from falcon.asgi import Request, Response

from ledger import deliveries
from ledger.group_commit import PaymentsGroupCommit
from ledger.http import bodies, parse, render
from ledger.signatures import Webhooks


class PaymentWebhook:
    def __init__(self, group_commit: PaymentsGroupCommit, webhooks: Webhooks) -> None:
        self._group_commit = group_commit
        self._webhooks = webhooks

    async def on_post(self, req: Request, resp: Response) -> None:
        # Authenticated by its signature, not a token.
        received = parse.payment_delivery(await bodies.read_body(req), req.get_header)
        delivery = deliveries.accepted(received, self._webhooks)
        outcome = await self._group_commit.receive(delivery)
        resp.status = falcon.HTTP_201 if outcome.is_new else falcon.HTTP_200
        resp.media = render.payment_outcome(outcome)
