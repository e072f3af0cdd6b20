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

import psycopg
import uvicorn

from ledger import db, logs
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


def serve(settings: Settings, host: str, port: int) -> None:
    if settings.uses_public_webhook_secret:
        log.warning(
            "LEDGER_WEBHOOK_SECRETS holds the public example secret: anyone can sign payments. "
            "Set your own secret in production."
        )
    with database(settings) as url:
        applied = db.migrate(url, settings.migrations_dir)
        log.info("migrations applied: %s", ", ".join(applied) or "none pending")
        asyncio.run(_serve(settings, url, host, port))


async def _serve(settings: Settings, url: str, host: str, port: int) -> None:
    pool = db.create_pool(url, settings.pool_size_min, settings.pool_size_max, settings.pool_timeout_s)
    app = create_app(settings, pool)  # opens and closes the pool in the ASGI lifespan
    # log_config=None: uvicorn's own lines go through the root logger, as JSON like ours;
    # its access log is off, ledger.http.observe writes one line per request instead.
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
    )
    server = uvicorn.Server(config)
    # On Ctrl-C or SIGTERM uvicorn lets the requests in flight finish, runs the lifespan
    # shutdown, then raises KeyboardInterrupt again, which main() takes as a normal stop.
    await server.serve()


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


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ledger", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="migrate, then serve HTTP")
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=8000)
    commands.add_parser("migrate", help="apply the pending migrations")
    replay_parser = commands.add_parser(
        "replay", help="rebuild the projections from the event log and compare them with the live ones"
    )
    replay_parser.add_argument(
        "--apply", action="store_true", help="replace the live projections with the rebuild"
    )
    args = parser.parse_args(argv)

    logs.configure()
    try:
        settings = settings_from_environment(os.environ)
    except ValueError as error:
        parser.error(str(error))

    if args.command == "serve":
        # SIGTERM (docker stop, systemd) stops as cleanly as Ctrl-C: the embedded PostgreSQL
        # is stopped on the way out instead of left running.
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            serve(settings, args.host, args.port)
        except KeyboardInterrupt:
            log.info("stopped")
    elif args.command == "migrate":
        migrate(settings)
    elif args.command == "replay":
        return run_replay(settings, args.apply)
    return 0


if __name__ == "__main__":
    sys.exit(main())
