"""uvicorn's httptools protocol, answering each response with one write() instead of two, and
closing a connection whose request does not arrive whole in time.

uvicorn writes a response's head when the app sends `http.response.start` and its body when
the app sends `http.response.body`, and uvloop sends each at once: two system calls and two
TCP segments per answer. Here the head waits for the body and both leave together.

uvicorn bounds the wait for the next request on a kept-alive connection, but not the time a
client takes to send one: a request sent a byte at a time, or a connection that sends
nothing, would be kept open for ever (slowloris). Here a request must arrive whole, head and
body, within read_timeout_s of its first byte (or of the connection, for the first request);
otherwise it is answered 408 and the connection closed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

RESPONSE_HEAD = b"HTTP/"


class OneWriteTransport:
    """A transport that holds a response head until the next write, then writes both at once.

    Order is never changed: held bytes always go out before anything written after them. If
    nothing follows (a HEAD request, an error answered by uvicorn itself), the head is flushed
    on the next turn of the event loop, and before the transport closes.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._held is not None:
            data, self._held = self._held + data, None
            self._transport.write(data)
        elif data.startswith(RESPONSE_HEAD) and data.endswith(b"\r\n\r\n"):
            self._held = bytes(data)
            self._loop.call_soon(self._flush)
        else:
            self._transport.write(data)

    def _flush(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # get_extra_info, is_closing, pause_reading, ...
        return getattr(self._transport, name)


READ_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_BODY = json.dumps(
    {"error": "request_timeout", "message": "The request did not arrive whole in time."}
).encode()
REQUEST_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"content-length: "
    + str(len(REQUEST_TIMEOUT_BODY)).encode()
    + b"\r\nconnection: close\r\n\r\n"
    + REQUEST_TIMEOUT_BODY
)


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn takes it as `http=functools.partial(OneWriteHttpToolsProtocol, read_timeout_s=...)`."""

    def __init__(self, *args: Any, read_timeout_s: float = READ_TIMEOUT_S, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_timeout_s = read_timeout_s
        self._read_deadline: asyncio.TimerHandle | None = None
        self._reading_request = False  # a request has begun and not yet fully arrived

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(OneWriteTransport(transport, self.loop))  # type: ignore[arg-type]
        self._arm_read_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_read_deadline()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_request = True
        if self._read_deadline is None:  # a later request on a kept-alive connection
            self._arm_read_deadline()

    def on_message_complete(self) -> None:
        self._reading_request = False
        self._disarm_read_deadline()
        super().on_message_complete()

    def _arm_read_deadline(self) -> None:
        self._read_deadline = self.loop.call_later(self._read_timeout_s, self._read_timed_out)

    def _disarm_read_deadline(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        if self.transport.is_closing():
            return
        if self._reading_request and not (self.cycle is not None and self.cycle.response_started):
            self.transport.write(REQUEST_TIMEOUT_RESPONSE)
        self.transport.close()
