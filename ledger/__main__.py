"""The command line: `ledger serve | migrate | replay | export | verify`. The only code that
reads the environment."""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import falcon.asgi
import psycopg
import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from ledger import db, logs
from ledger.audit import export, feed
from ledger.audit.export import ExportReplay, replay_export
from ledger.audit.verify import VerifyReport, verify
from ledger.config import PRODUCTION, Settings, environment_of, production_refusals, settings_from_environment
from ledger.http import listener, protocol
from ledger.http.app import create_app
from ledger.projections.rebuild import replay
from ledger.signatures import Webhooks

log = logging.getLogger("ledger")
WORKER_APP = "ledger.__main__:worker_app"  # uvicorn imports it in each worker process


@contextmanager
def database(settings: Settings) -> Iterator[str]:
    """Yield the database URL: LEDGER_DATABASE_URL, or the embedded PostgreSQL (stopped after)."""
    if settings.database_url:
        yield settings.database_url
        return
    log.info("no LEDGER_DATABASE_URL: starting the embedded PostgreSQL in %s", settings.data_dir / "postgres")
    with db.embedded_postgres(settings.data_dir) as url:
        yield url


def serve(settings: Settings, host: str, port: int, workers: int) -> int:
    if settings.uses_public_webhook_secret:
        log.warning(
            "LEDGER_WEBHOOK_SECRETS holds the public example secret: anyone can sign payments. "
            "Set your own secret in production."
        )
    with database(settings) as url:
        refusals = prepare_database(settings, url)
        if refusals:
            for refusal in refusals:
                print(f"ledger serve: LEDGER_ENV=production: {refusal}", file=sys.stderr)
            return 2
        # The workers build their settings from the environment (worker_app): they must find
        # the database this process chose, the embedded one included.
        os.environ["LEDGER_DATABASE_URL"] = url
        # Nor the owner's login: the processes that serve requests never hold it.
        os.environ.pop("LEDGER_OWNER_DATABASE_URL", None)
        # At most one password hashing job per core on the whole machine (ledger.passwords).
        os.environ.setdefault("LEDGER_PASSWORD_HASHING_JOBS", str(max(1, (os.cpu_count() or 1) // workers)))
        # uvicorn, not Server.serve under our own asyncio.run: only uvicorn's runner installs
        # uvloop (our asyncio.run ran the stdlib loop, slower on every read and write). With
        # one worker it serves in this process; with more, each worker process imports
        # worker_app and builds its own app and pool in its own event loop. On Ctrl-C or
        # SIGTERM the requests in flight finish and each lifespan closes its pool; with one
        # worker uvicorn then raises KeyboardInterrupt again, which main() takes as a normal stop.
        options: dict[str, Any] = {
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
            # uvicorn's own lines go through the root logger, as JSON like ours; its access log
            # is off: ledger.http.observe writes one JSON line per request instead.
            "log_config": None,
            "access_log": False,
            "timeout_graceful_shutdown": settings.shutdown_timeout_s,
        }
        if workers == 1:
            uvicorn.run(WORKER_APP, **options)
            return 0
        config = uvicorn.Config(WORKER_APP, **options)
        if listener.spreads_connections():
            # A listening socket for each worker, so that connections spread evenly (see
            # ledger.http.listener); uvicorn's supervisor starts, watches and stops the workers.
            try:
                sockets: list[socket.socket] = [listener.WorkerListener.for_address(host, port)]
            except OSError as error:
                log.error("cannot listen on %s:%d: %s", host, port, error)
                return STARTUP_FAILURE
            log.info("serving on %s:%d: %d workers, a listening socket each", host, port, workers)
        else:
            # One shared socket. libuv accepts every pending connection at once, so a burst went
            # 29 to one worker and 3 to the other; with this setting each worker accepts one
            # connection per wakeup, which evens them out somewhat.
            os.environ.setdefault("UV_TCP_SINGLE_ACCEPT", "1")
            sockets = [config.bind_socket()]
        Multiprocess(config, sockets=sockets).run()
    return 0


def prepare_database(settings: Settings, url: str) -> list[str]:
    """Migrate (as the owner) or check that nothing is pending; in production, return why the
    database refuses to be served (none: it may be served).

    The owner migrates: LEDGER_OWNER_DATABASE_URL, or else the serving URL itself (development,
    the embedded default). In production without an owner URL the serving login only checks
    that `ledger migrate` has run: it may not change the schema.
    """
    refusals = db.serving_login_refusals(url) if settings.is_production else []
    if settings.is_production and settings.owner_database_url is None:
        pending = db.pending_migrations(url, settings.migrations_dir)
        if pending:
            refusals.append(
                f"{len(pending)} migration(s) are not applied: run `ledger migrate` with the owner's URL "
                "in LEDGER_OWNER_DATABASE_URL (or give it to `ledger serve` too)"
            )
        return refusals
    if refusals:
        return refusals
    applied = db.migrate(
        owner_url(settings, url), settings.migrations_dir, with_seeds=not settings.is_production
    )
    log.info("migrations applied: %s", ", ".join(applied) or "none pending")
    if settings.is_production:
        refusals += db.seeded_user_refusals(url)
    return refusals


def owner_url(settings: Settings, url: str) -> str:
    """Return the URL of the tables' owner: LEDGER_OWNER_DATABASE_URL, else the database's URL."""
    return settings.owner_database_url or url


def worker_app() -> falcon.asgi.App:
    """Return the app of one server process, with its own (closed) pool; called by uvicorn.

    The pool opens in the ASGI lifespan, in the event loop of the process that serves.
    """
    logs.configure()  # a worker process starts afresh: it logs JSON like the main one
    settings = settings_from_environment(os.environ)
    assert settings.database_url, "serve() sets LEDGER_DATABASE_URL before starting the workers"
    conninfo = db.serving_conninfo(settings.database_url, statement_timeout_s=settings.statement_timeout_s)
    pool = db.create_pool(conninfo, settings.pool_size_min, settings.pool_size_max, settings.pool_timeout_s)
    return create_app(settings, pool)


def migrate(settings: Settings) -> None:
    with database(settings) as url:
        applied = db.migrate(
            owner_url(settings, url), settings.migrations_dir, with_seeds=not settings.is_production
        )
        print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")


def run_replay(settings: Settings, apply_to_live: bool) -> int:
    with database(settings) as url:
        report = asyncio.run(_replay(owner_url(settings, url), apply_to_live))
    print(report.summary())
    for difference in report.differences:
        print(f"  {difference.projection}: {difference.side}: {difference.row}")
    return 0 if report.equal else 1


async def _replay(url: str, apply_to_live: bool):  # noqa: ANN202
    # A fresh connection with no prepared statements: see rebuild.replay.
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, prepare_threshold=None) as conn:
        return await replay(conn, apply_to_live=apply_to_live)


def run_replay_export(settings: Settings, source: str, database_url: str) -> int:
    """Replay an export into the empty database at database_url, without the service."""
    db.migrate(database_url, settings.migrations_dir, with_seeds=False)
    with open(
        sys.stdin.fileno() if source == "-" else source, encoding="utf-8", closefd=source != "-"
    ) as lines:
        try:
            result = asyncio.run(_replay_export(database_url, lines))
        except (export.ExportError, ValueError) as error:
            print(f"ledger replay: {error}", file=sys.stderr)
            return 2
    for account in result.accounts:
        print(f"account {account.id} (user {account.user_id}): {account.balance}")
    print(
        f"replayed {result.load.events} events through cursor {result.load.last_cursor}: "
        f"{result.summary.accounts} accounts, balances total {result.summary.balance_total}"
    )
    print(f"checksum {result.summary.checksum}")
    for line_number, position, stream in result.load.hash_mismatches:
        print(f"  hash differs from the export: line {line_number}, position {position} ({stream})")
    return 1 if result.load.hash_mismatches else 0


async def _replay_export(url: str, lines: Iterable[str]) -> ExportReplay:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, prepare_threshold=None) as conn:
        return await replay_export(conn, lines)


def run_export(settings: Settings, after: feed.Cursor) -> int:
    with database(settings) as url:
        asyncio.run(_export(url, after))
    return 0


async def _export(url: str, after: feed.Cursor) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        progress = Progress(await feed.count_after(conn, after)) if sys.stderr.isatty() else None
        async for line in export.lines(conn, after):
            sys.stdout.write(line + "\n")
            if progress:
                progress.advance()
        if progress:
            progress.finish()


def run_verify(settings: Settings) -> int:
    with database(settings) as url:
        report = asyncio.run(_verify(url, settings.webhooks))
    for finding in report.findings:
        print(finding)
    verdict = "intact" if report.intact else f"{len(report.findings)} finding(s)"
    print(f"verified {report.events} events in {report.streams} streams: {verdict}")
    return 0 if report.intact else 1


async def _verify(url: str, webhooks: Webhooks) -> VerifyReport:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await verify(conn, webhooks)


class Progress:
    """A one-line progress count on standard error, redrawn at most every 0.2 s."""

    def __init__(self, total: int) -> None:
        self._total = total
        self._done = 0
        self._drawn_at = 0.0

    def advance(self) -> None:
        self._done += 1
        now = time.monotonic()
        if now - self._drawn_at >= 0.2:
            self._drawn_at = now
            self._draw()

    def finish(self) -> None:
        self._draw()
        sys.stderr.write("\n")

    def _draw(self) -> None:
        total = max(self._total, self._done)  # events may arrive during the export
        percent = 100 * self._done // total if total else 100
        sys.stderr.write(f"\rexported {self._done}/{total} events ({percent}%)")
        sys.stderr.flush()


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
    commands.add_parser("migrate", help="apply the pending migrations")
    replay_parser = commands.add_parser(
        "replay", help="rebuild the projections from the event log and compare them with the live ones"
    )
    replay_parser.add_argument(
        "--apply", action="store_true", help="replace the live projections with the rebuild"
    )
    replay_parser.add_argument(
        "--from",
        dest="source",
        metavar="FILE",
        help="instead: build the projections from an export (- for standard input) into the empty "
        "database at --database-url, and print each balance and the checksum",
    )
    replay_parser.add_argument("--database-url", help="the empty database for --from")
    export_parser = commands.add_parser(
        "export", help="write the event feed as JSON Lines to standard output (secrets redacted)"
    )
    export_parser.add_argument("--after", default="0", help="the feed cursor to start after (default: 0)")
    commands.add_parser(
        "verify", help="check every stream's hash chain and head, and every webhook signature"
    )
    args = parser.parse_args(argv)

    logs.configure()
    try:
        if args.command == "serve" and environment_of(os.environ) == PRODUCTION:
            # Before anything is started or written (a generated JWT secret included).
            refusals = production_refusals(os.environ)
            if refusals:
                parser.exit(2, "".join(f"ledger serve: LEDGER_ENV=production: {r}\n" for r in refusals))
        settings = settings_from_environment(os.environ)
    except ValueError as error:
        parser.error(str(error))

    if args.command == "serve":
        # SIGTERM (docker stop, systemd) stops as cleanly as Ctrl-C: the embedded PostgreSQL
        # is stopped on the way out instead of left running.
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            return serve(settings, args.host, args.port, args.workers)
        except KeyboardInterrupt:
            log.info("stopped")
    elif args.command == "migrate":
        migrate(settings)
    elif args.command == "replay" and args.source is not None:
        if not args.database_url or args.apply:
            parser.error("replay --from needs --database-url (an empty database) and takes no --apply")
        return run_replay_export(settings, args.source, args.database_url)
    elif args.command == "replay":
        return run_replay(settings, args.apply)
    elif args.command == "export":
        after = feed.Cursor.parse(args.after)
        if after is None:
            parser.error("--after must be a feed cursor (<transaction>-<position>) or 0")
        return run_export(settings, after)
    elif args.command == "verify":
        return run_verify(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
