"""Liveness for container health checks."""

from __future__ import annotations

from falcon.asgi import Request, Response

from ledger.http.auth import PUBLIC


class Health:
    """The process is alive (for container health checks); touches nothing."""

    access = PUBLIC

    async def on_get(self, req: Request, resp: Response) -> None:
        resp.media = {"status": "ok"}
