"""uvicorn's httptools protocol, answering each response with one write() instead of two.

uvicorn writes a response's head when the app sends `http.response.start` and its body when
the app sends `http.response.body`, and uvloop sends each at once: two system calls and two
TCP segments per answer. On a webhook delivery those two write() calls were a quarter of the
server's CPU (py-spy --native). Here the head waits for the body and both leave together.
"""

from __future__ import annotations

import asyncio
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


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(OneWriteTransport(transport, self.loop))  # type: ignore[arg-type]
