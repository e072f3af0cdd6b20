"""One write() per response: the head waits for the body, order never changes, nothing is lost."""

from __future__ import annotations

import asyncio

from ledger.server.protocol import OneWriteTransport

HEAD = b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n"


class RecordingTransport:
    """Keeps what was written, write by write (a stand-in for the socket, not the database)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


async def test_a_head_and_its_body_leave_in_one_write() -> None:
    inner = RecordingTransport()
    transport = OneWriteTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(HEAD)
    assert inner.writes == []
    transport.write(b"{}")
    assert inner.writes == [HEAD + b"{}"]
    transport.write(b"more")  # not a head: straight through, after what came before
    assert inner.writes == [HEAD + b"{}", b"more"]
    await asyncio.sleep(0)  # the scheduled flush finds nothing held
    assert inner.writes == [HEAD + b"{}", b"more"]


async def test_a_head_without_a_body_goes_out_on_the_next_loop_turn() -> None:
    inner = RecordingTransport()
    transport = OneWriteTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(HEAD)
    await asyncio.sleep(0)
    assert inner.writes == [HEAD]


async def test_closing_sends_a_held_head_first_and_other_calls_pass_through() -> None:
    inner = RecordingTransport()
    transport = OneWriteTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(HEAD)
    transport.close()
    assert inner.writes == [HEAD] and inner.closed
    assert transport.get_extra_info("peername") == "info:peername"
    await asyncio.sleep(0)
    assert inner.writes == [HEAD]
