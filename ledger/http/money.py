"""Money moving: transfers between accounts, reversals of payments, an account's postings."""

from __future__ import annotations

import falcon
from falcon.asgi import Request, Response
from psycopg_pool import AsyncConnectionPool

from ledger import commands, db
from ledger.commands import TransferRequest
from ledger.group_commit import TransfersGroupCommit
from ledger.http import bodies, parse, render
from ledger.http.users import link_next
from ledger.projections import accounts

IDEMPOTENCY_KEY = "Idempotency-Key"


class Transfers:
    """POST /transfers: from one of the caller's accounts to any user's account, once per key."""

    checks_revocation = True  # the statement that makes the transfer checks the token's user

    def __init__(self, group_commit: TransfersGroupCommit) -> None:
        self._group_commit = group_commit

    async def on_post(self, req: Request, resp: Response) -> None:
        claims = req.context.claims
        key = parse.idempotency_key(req.get_header(IDEMPOTENCY_KEY))
        transfer = parse.transfer(await bodies.read_body(req))
        outcome = await self._group_commit.receive(
            TransferRequest(claims.user_id, claims.credentials_version, key, transfer)
        )
        resp.status = falcon.HTTP_201 if outcome.is_new else falcon.HTTP_200
        resp.media = render.transfer(outcome)


class Reversals:
    """POST /payments/{payment_id}/reversals: a refund or a chargeback (admins), once per key."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def on_post(self, req: Request, resp: Response, payment_id: str) -> None:
        key = parse.idempotency_key(req.get_header(IDEMPOTENCY_KEY))
        reversal = parse.reversal(await bodies.read_body(req), parse.payment_id(payment_id))
        async with db.connection(self._pool) as conn:
            outcome = await commands.reverse_payment(conn, req.context.user.id, key, reversal)
        resp.status = falcon.HTTP_201 if outcome.is_new else falcon.HTTP_200
        resp.media = render.reversal(outcome)


class AccountPostings:
    """GET /user/accounts/{account_id}/postings: newest first, paged like the other lists (the
    account's owner; admins and auditors for any user's account)."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def on_get(self, req: Request, resp: Response, account_id: str) -> None:
        target = parse.account_id(account_id)
        limit, after = parse.page(req.get_param("limit"), req.get_param("after"))
        before = bodies.BIGINT_MAX if after is None else after
        async with db.connection(self._pool) as conn:
            views = await accounts.postings_page(conn, req.context.user, target, before, limit + 1)
        if len(views) > limit:
            views = views[:limit]
            link_next(req, resp, limit, views[-1].id)
        resp.media = [render.posting(view) for view in views]
