"""Group commit: requests that arrive together are recorded together, in one statement and one
commit, and each is answered as if it had come alone. The webhook's deliveries and the transfers
each have one.

There is no fixed window. A request that finds fewer than in_flight_max batches in the
database leaves at once (alone, at low load: no wait at all); the requests that arrive while
the batches are there gather, and leave together as soon as one returns. The window is the
time the database takes for a batch, and it only exists when requests queue anyway.

One GroupCommit per server process and kind of request, in its event loop. Each request's
outcome, or the refusal it would have got alone, goes back to that request; a failure of the
whole batch (the database lost, a statement timeout, a commit the standby did not confirm) goes
to each request of the batch, which is then answered 503 and sent again by its sender.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from ledger import commands, db
from ledger.commands import PaymentOutcome, TransferOutcome, TransferRequest
from ledger.events import PaymentReceived

# Batches in the database at once, per server process: two keep the database busy while a
# returned batch's answers are written out.
IN_FLIGHT_MAX = 2

Request = TypeVar("Request")
Outcome = TypeVar("Outcome")
# Records a batch in one transaction of its own; returns each request's outcome or refusal, in order.
Recorder = Callable[[AsyncConnection, list[Request]], Awaitable[list[Outcome | Exception]]]


async def record_payments(
    conn: AsyncConnection, deliveries: list[PaymentReceived]
) -> list[PaymentOutcome | Exception]:
    if len(deliveries) == 1:  # alone: the single statement, no subtransaction
        return [await commands.receive_payment_or_refusal(conn, deliveries[0])]
    return await commands.receive_payments(conn, deliveries)


class GroupCommit(Generic[Request, Outcome]):
    def __init__(
        self,
        pool: AsyncConnectionPool,
        batch_max: int,
        in_flight_max: int = IN_FLIGHT_MAX,
        record: Recorder[Request, Outcome] = record_payments,  # type: ignore[assignment]
    ) -> None:
        self._pool = pool
        self._batch_max = batch_max
        self._in_flight_max = in_flight_max
        self._record = record
        self._in_flight = 0
        self._waiting: deque[tuple[Request, asyncio.Future[Outcome]]] = deque()
        self._batches: set[asyncio.Task[None]] = set()  # strong references: the loop keeps weak ones
        self.batches_sent = 0

    async def receive(self, request: Request) -> Outcome:
        """Return the request's outcome, as its command would alone; raise its refusal, or what
        failed its batch."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting.append((request, future))
        self._send_what_waits()
        return await future

    def _send_what_waits(self) -> None:
        while self._waiting and self._in_flight < self._in_flight_max:
            count = min(len(self._waiting), self._batch_max)
            batch = [self._waiting.popleft() for _ in range(count)]
            self._in_flight += 1
            self.batches_sent += 1
            task = asyncio.create_task(self._send(batch))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    async def _send(self, batch: list[tuple[Request, asyncio.Future[Outcome]]]) -> None:
        try:
            async with db.connection(self._pool) as conn:
                outcomes = await self._record(conn, [request for request, _ in batch])
        except Exception as failure:  # the whole batch: each of its requests gets it
            for _, future in batch:
                if not future.done():
                    future.set_exception(failure)
        else:
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():  # its request went away meanwhile
                    continue
                if isinstance(outcome, Exception):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
        finally:
            self._in_flight -= 1
            self._send_what_waits()


# What the app holds: one of each per server process.
PaymentsGroupCommit = GroupCommit[PaymentReceived, PaymentOutcome]
TransfersGroupCommit = GroupCommit[TransferRequest, TransferOutcome]
