"""The load generator: N keep-alive HTTP/1.1 connections, each sending its next request as soon
as the previous answer is read, for a fixed time.

Written on asyncio's protocol callbacks (uvloop when installed) rather than an HTTP client
library or asyncio streams, so that a request costs the generator a few microseconds of CPU:
an answer is parsed in data_received and the next request written from there, with no task,
future or timer per request (the streams version, with a wait_for per answer, cost 2.5 times
as much CPU per request). The generator shares the machine's cores with the server and
PostgreSQL, so every microsecond it spends is taken from what it measures: the `generator`
scenario points it at a server that answers instantly (bench.trivial) to show how far above
the service it goes, and every run reports the share of a core the generator itself used.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

# What a connection sends next: the request bytes and a tag handed back with the answer.
NextRequest = Callable[[], tuple[bytes, Any]]
# Called with (tag, status, body) for every answer, in the order answers arrive.
OnAnswer = Callable[[Any, int, bytes], None]

CONNECT_TIMEOUT_S = 10.0
ANSWER_TIMEOUT_S = 30.0
HEAD_END = b"\r\n\r\n"
CONTENT_LENGTH = b"\r\ncontent-length:"


@dataclass
class LoadResult:
    duration_s: float
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    transport_errors: int = 0
    generator_cpu_s: float = 0.0

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)

    def errors(self, ok_statuses: frozenset[int]) -> int:
        bad = sum(count for status, count in self.statuses.items() if status not in ok_statuses)
        return bad + self.transport_errors


def request_bytes(
    method: str, path: str, host: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> bytes:
    """Return one HTTP/1.1 keep-alive request, ready to write."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method in ("POST", "PUT"):
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def parse_answer(buffer: bytes) -> tuple[int, bytes, int] | None:
    """Return (status, body, length of the whole answer) of the answer at the start of buffer,
    or None while it is incomplete. Answers carry a Content-Length (uvicorn always sends one
    for a body it knows whole)."""
    head_end = buffer.find(HEAD_END)
    if head_end < 0:
        return None
    head = buffer[:head_end].lower()
    length = 0
    at = head.find(CONTENT_LENGTH)
    if at >= 0:
        value_end = head.find(b"\r\n", at + len(CONTENT_LENGTH))
        length = int(head[at + len(CONTENT_LENGTH) : value_end if value_end >= 0 else None])
    body_start = head_end + len(HEAD_END)
    if len(buffer) < body_start + length:
        return None
    return int(buffer[9:12]), buffer[body_start : body_start + length], body_start + length


class _Connection(asyncio.Protocol):
    """One keep-alive connection: writes a request, reads its answer, writes the next."""

    def __init__(self, run: _Run) -> None:
        self._run = run
        self._buffer = b""
        self._tag: Any = None
        self.sent_at = 0.0
        self.awaiting = False  # a request was written and its answer is not read yet
        self.done: asyncio.Future[None] = run.loop.create_future()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._send_next()

    def _send_next(self) -> None:
        if time.perf_counter() >= self._run.deadline:
            self.finish()
            return
        data, self._tag = self._run.next_request()
        self.sent_at = time.perf_counter()
        self.awaiting = True
        assert self._transport is not None
        self._transport.write(data)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while self.awaiting:
            parsed = parse_answer(self._buffer)
            if parsed is None:
                return
            status, body, length = parsed
            self._buffer = self._buffer[length:]
            self.awaiting = False
            self._run.record(self.sent_at, self._tag, status, body)
            self._send_next()

    def connection_lost(self, exc: Exception | None) -> None:
        self.finish()

    def finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()


@dataclass
class _Run:
    loop: asyncio.AbstractEventLoop
    deadline: float
    next_request: NextRequest
    on_answer: OnAnswer
    result: LoadResult

    def record(self, sent_at: float, tag: Any, status: int, body: bytes) -> None:
        result = self.result
        result.latencies_ms.append((time.perf_counter() - sent_at) * 1000)
        result.statuses[status] = result.statuses.get(status, 0) + 1
        self.on_answer(tag, status, body)


async def _keep_busy(host: str, port: int, run: _Run) -> None:
    """Keep one connection busy until the deadline; open a new one when it breaks or hangs.

    A request whose answer never came counts as a transport error; its tag never reaches
    on_answer, so what the caller counts as accepted is only what was answered.
    """
    while time.perf_counter() < run.deadline:
        _, connection = await asyncio.wait_for(
            run.loop.create_connection(lambda: _Connection(run), host, port), CONNECT_TIMEOUT_S
        )
        while not connection.done.done():
            # One timer a second for each connection, not one for each request.
            await asyncio.wait([connection.done], timeout=1.0)
            if connection.awaiting and time.perf_counter() - connection.sent_at > ANSWER_TIMEOUT_S:
                connection.finish()
        if connection.awaiting:
            run.result.transport_errors += 1


async def run(
    host: str,
    port: int,
    concurrency: int,
    duration_s: float,
    next_request: NextRequest,
    on_answer: OnAnswer = lambda tag, status, body: None,
) -> LoadResult:
    """Keep concurrency connections busy for duration_s; return what they saw.

    Every request sent gets its answer read (the last ones finish after the deadline), so a
    caller that counts answers knows exactly what the server accepted.
    """
    result = LoadResult(duration_s=duration_s)
    cpu_started, started = time.process_time(), time.perf_counter()
    loop = asyncio.get_running_loop()
    the_run = _Run(loop, started + duration_s, next_request, on_answer, result)
    await asyncio.gather(*(_keep_busy(host, port, the_run) for _ in range(concurrency)))
    result.duration_s = time.perf_counter() - started
    result.generator_cpu_s = time.process_time() - cpu_started
    return result


def new_event_loop() -> asyncio.AbstractEventLoop:
    """Return a uvloop loop when uvloop is installed (it comes with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
