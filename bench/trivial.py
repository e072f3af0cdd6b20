"""A server that answers every request at once with a fixed 200: the generator's own ceiling.

`python -m bench.trivial PORT` serves on 127.0.0.1:PORT until killed. It only understands
requests without a body (the `generator` scenario sends GETs), which keeps it trivial.
"""

from __future__ import annotations

import asyncio
import sys
from typing import cast

from bench.load import new_event_loop

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class Answer(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._pending = b""

    def data_received(self, data: bytes) -> None:
        self._pending += data
        complete = self._pending.count(b"\r\n\r\n")
        if complete:
            self._pending = self._pending.rpartition(b"\r\n\r\n")[2]
            self._transport.write(ANSWER * complete)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Answer, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(serve(int(sys.argv[1])))
