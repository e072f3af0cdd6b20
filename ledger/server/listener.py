"""The listening sockets of `ledger serve --workers N`: one of its own for each worker.

uvicorn binds one socket in the supervisor and every worker accepts from it. Whichever worker
wakes first takes a new connection, so a burst of keep-alive connections lands unevenly, often
all or nearly all on one worker. That worker then runs out of pool connections and serves alone
while the others idle, and their share of the machine's CPU goes unused.

With SO_REUSEPORT each worker listens on a socket of its own, bound to the same address, and
Linux hands each new connection to one of them by a hash of its addresses: an even share in
expectation, whichever worker is awake. The supervisor keeps a bound socket that never listens:
it holds the port (and resolves port 0) without taking connections.

The price: connections that a worker has not accepted yet are reset if that worker dies (its
queue dies with its socket), where a shared socket would leave them to the others. Clients of a
webhook retry, and uvicorn's supervisor starts a new worker.

Only on Linux: elsewhere SO_REUSEPORT does not spread connections (the last socket bound gets
them all), and `ledger serve` keeps uvicorn's shared socket.
"""

from __future__ import annotations

import socket
import sys
from typing import Any


def spreads_connections() -> bool:
    """Return whether this system spreads connections over SO_REUSEPORT sockets (Linux)."""
    return sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")


def _reuse_port_socket(family: int, address: Any) -> socket.socket:
    """Return a new socket bound to address with SO_REUSEPORT, not yet listening."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


class WorkerListener(socket.socket):
    """The supervisor's bound socket, which each worker receives as a new socket of its own.

    uvicorn sends the supervisor's sockets to each worker process by pickling them (the spawn
    start method), also when it restarts a worker. A plain socket arrives as a duplicate of the
    same socket; this one arrives as a fresh SO_REUSEPORT socket bound to the same address,
    which uvicorn then listens on in that worker. tests/e2e/test_workers.py checks that the
    workers listen on sockets of their own.
    """

    @classmethod
    def for_address(cls, host: str, port: int) -> WorkerListener:
        """Return a bound, not listening, SO_REUSEPORT socket on (host, port); raise OSError."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # First a plain bind: it fails while anything listens on the port, another `ledger
        # serve` included, which SO_REUSEPORT alone would let share the port unnoticed.
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
            port = probe.getsockname()[1]  # port 0 picks one
        bound = _reuse_port_socket(family, (host, port))
        listener = cls(family, socket.SOCK_STREAM, fileno=bound.detach())
        listener.set_inheritable(False)
        return listener

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return (_reuse_port_socket, (self.family, self.getsockname()))
