"""`ledger serve` under uvicorn: the options it runs with, its worker processes, and the factory
each of them calls to build its app."""

from __future__ import annotations

import functools
import logging
import os
import socket
from typing import Any

import falcon.asgi
import uvicorn
from psycopg_pool import AsyncConnectionPool
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from ledger import db, logs
from ledger.config import Settings, settings_from_environment
from ledger.http.app import create_app
from ledger.server import listener, protocol

log = logging.getLogger("ledger")
# uvicorn imports the factory by this name in each worker process.
WORKER_APP = "ledger.server.workers:worker_app"


def serve(settings: Settings, database_url: str, host: str, port: int, workers: int) -> int:
    """Serve HTTP on host:port from the migrated database at database_url until interrupted;
    return the exit code.

    With one worker uvicorn serves in this process; with more, each worker process imports
    worker_app and builds its own app and pool in its own event loop. On Ctrl-C or SIGTERM the
    requests in flight finish and each lifespan closes its pool; with one worker uvicorn then
    raises KeyboardInterrupt again, which the caller takes as a normal stop.
    """
    # The workers build their settings from the environment (worker_app): they must find the
    # database this process chose, the embedded one included.
    os.environ["LEDGER_DATABASE_URL"] = database_url
    # Nor the owner's login: the processes that serve requests never hold it.
    os.environ.pop("LEDGER_OWNER_DATABASE_URL", None)
    # At most one password hashing job per core on the whole machine (ledger.passwords).
    os.environ.setdefault("LEDGER_PASSWORD_HASHING_JOBS", str(max(1, (os.cpu_count() or 1) // workers)))
    options = uvicorn_options(settings, host, port, workers)
    # uvicorn's runner, not Server.serve under our own asyncio.run: only uvicorn's runner installs
    # uvloop, which is cheaper than the stdlib loop on every read and write.
    if workers == 1:
        uvicorn.run(WORKER_APP, **options)
        return 0
    config = uvicorn.Config(WORKER_APP, **options)
    if listener.spreads_connections():
        # A listening socket for each worker, so that connections spread evenly (see
        # ledger.server.listener); uvicorn's supervisor starts, watches and stops the workers.
        try:
            sockets: list[socket.socket] = [listener.WorkerListener.for_address(host, port)]
        except OSError as error:
            log.error("cannot listen on %s:%d: %s", host, port, error)
            return STARTUP_FAILURE
        log.info("serving on %s:%d: %d workers, a listening socket each", host, port, workers)
    else:
        # One shared socket. libuv accepts every pending connection at once, so a burst of
        # connections lands on whichever worker woke first; with this setting each worker accepts
        # one connection per wakeup, which evens them out somewhat.
        os.environ.setdefault("UV_TCP_SINGLE_ACCEPT", "1")
        sockets = [config.bind_socket()]
    Multiprocess(config, sockets=sockets).run()
    return 0


def uvicorn_options(settings: Settings, host: str, port: int, workers: int) -> dict[str, Any]:
    """Return the keyword arguments of uvicorn.run and uvicorn.Config for `ledger serve`."""
    return {
        "factory": True,
        "host": host,
        "port": port,
        "workers": workers,
        # One write() per response, and a deadline for each request to arrive whole.
        "http": functools.partial(
            protocol.OneWriteHttpToolsProtocol, read_timeout_s=settings.request_read_timeout_s
        ),
        "lifespan": "on",
        "log_level": "info",
        # uvicorn's own lines go through the root logger, as JSON like ours; its access log is
        # off: ledger.http.observe writes one JSON line per request instead.
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": settings.shutdown_timeout_s,
    }


def worker_app() -> falcon.asgi.App:
    """Return the app of one server process, with its own (closed) pool; called by uvicorn.

    The pool opens in the ASGI lifespan, in the event loop of the process that serves.
    """
    logs.configure()  # a worker process starts afresh: it logs JSON like the main one
    settings = settings_from_environment(os.environ)
    assert settings.database_url, "serve() sets LEDGER_DATABASE_URL before starting the workers"
    pool = _serving_pool(settings, settings.database_url, settings.database_pooler)
    # The replica is reached directly, never through the pooler in front of the primary.
    audit_pool = _serving_pool(settings, settings.replica_url, None) if settings.replica_url else None
    return create_app(settings, pool, audit_pool=audit_pool)


def _serving_pool(settings: Settings, url: str, pooler: str | None) -> AsyncConnectionPool:
    conninfo = db.serving_conninfo(url, statement_timeout_s=settings.statement_timeout_s, pooler=pooler)
    return db.create_pool(
        conninfo,
        settings.pool_size_min,
        settings.pool_size_max,
        settings.pool_timeout_s,
        prepared_statements=pooler is None,
    )
