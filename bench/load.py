"""The load generator: N keep-alive HTTP/1.1 connections, each sending its next request as soon
as the previous answer is read, for a fixed time.

Written on raw asyncio streams (uvloop when installed) rather than an HTTP client library, so
that a request costs the generator a few microseconds of CPU: the `generator` scenario points it
at a server that answers instantly (bench.trivial) to show how far above the service it goes,
and every run reports the CPU the generator itself used.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# What a connection sends next: the request bytes and a tag handed back with the answer.
NextRequest = Callable[[], tuple[bytes, Any]]
# Called with (tag, status, body) for every answer, in the order answers arrive.
OnAnswer = Callable[[Any, int, bytes], None]

CONNECT_TIMEOUT_S = 10.0
ANSWER_TIMEOUT_S = 30.0


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

    def percentile_ms(self, fraction: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    def errors(self, ok_statuses: frozenset[int]) -> int:
        bad = sum(count for status, count in self.statuses.items() if status not in ok_statuses)
        return bad + self.transport_errors

    def summary(self, ok_statuses: frozenset[int]) -> dict[str, Any]:
        return {
            "rps": round(self.requests / self.duration_s, 1),
            "p50_ms": round(self.percentile_ms(0.50), 2),
            "p99_ms": round(self.percentile_ms(0.99), 2),
            "requests": self.requests,
            "errors": self.errors(ok_statuses),
            "statuses": {str(status): count for status, count in sorted(self.statuses.items())},
            "generator_cpu_share": round(self.generator_cpu_s / self.duration_s, 3),
        }


def request_bytes(
    method: str, path: str, host: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> bytes:
    """Return one HTTP/1.1 keep-alive request, ready to write."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method in ("POST", "PUT"):
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
            break
    body = await reader.readexactly(length) if length else b""
    return status, body


async def _connection(
    host: str,
    port: int,
    deadline: float,
    next_request: NextRequest,
    on_answer: OnAnswer,
    result: LoadResult,
) -> None:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT_S)
    try:
        while time.perf_counter() < deadline:
            data, tag = next_request()
            started = time.perf_counter()
            writer.write(data)
            try:
                status, body = await asyncio.wait_for(_read_answer(reader), ANSWER_TIMEOUT_S)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                result.transport_errors += 1
                writer.close()
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port), CONNECT_TIMEOUT_S
                )
                continue
            result.latencies_ms.append((time.perf_counter() - started) * 1000)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            on_answer(tag, status, body)
    finally:
        writer.close()


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
    deadline = started + duration_s
    await asyncio.gather(
        *(_connection(host, port, deadline, next_request, on_answer, result) for _ in range(concurrency))
    )
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
