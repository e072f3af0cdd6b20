"""The command line: `ledger serve | migrate | replay | export | verify`. Each command reads its
settings from the environment once (ledger.config), finds its database, and runs."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import psycopg

from ledger import db, logs
from ledger.audit import export, feed
from ledger.audit.checksums import BalanceSummary, live_balance_summary
from ledger.audit.export import ExportReplay, replay_export
from ledger.audit.verify import VerifyReport, verify
from ledger.config import PRODUCTION, Settings, environment_of, production_refusals, settings_from_environment
from ledger.projections.rebuild import ReplayReport, replay
from ledger.server import workers as server
from ledger.signatures import Webhooks

log = logging.getLogger("ledger")

DESCRIPTION = """\
An event-sourced payments ledger: an HTTP service that credits signed payment webhooks exactly
once and keeps every balance as a projection of an append-only event log, and the commands that
operators and auditors run on that log."""
EPILOG = """\
Settings come from LEDGER_* environment variables (see the README). Without LEDGER_DATABASE_URL,
each command uses an embedded PostgreSQL kept in LEDGER_DATA_DIR (default: ./.ledger), which
needs `pip install 'ledger[embedded]'`. `ledger COMMAND --help` lists a command's options."""


def main(argv: list[str] | None = None) -> int:
    """Run the command that argv (default: the process's arguments) names; return its exit code."""
    parser = build_parser()
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
    try:
        return run(parser, args, settings)
    except db.EmbeddedPostgresNotInstalledError as error:
        parser.exit(2, f"ledger {args.command}: {error}\n")


def run(parser: argparse.ArgumentParser, args: argparse.Namespace, settings: Settings) -> int:
    """Run the parsed command; return its exit code."""
    if args.command == "serve":
        # SIGTERM (docker stop, systemd) stops as cleanly as Ctrl-C: the embedded PostgreSQL
        # is stopped on the way out instead of left running.
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            return run_serve(settings, args.host, args.port, args.workers)
        except KeyboardInterrupt:
            log.info("stopped")
            return 0
    if args.command == "migrate":
        return run_migrate(settings)
    if args.command == "replay" and args.source is not None:
        if not args.database_url or args.apply:
            parser.error("replay --from needs --database-url (an empty database) and takes no --apply")
        return run_replay_export(settings, args.source, args.database_url)
    if args.command == "replay":
        return run_replay(settings, args.apply)
    if args.command == "export":
        after = feed.Cursor.parse(args.after)
        if after is None:
            parser.error("--after must be a feed cursor (<transaction>-<position>) or 0")
        return run_export(settings, after)
    assert args.command == "verify", args.command
    return run_verify(settings)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of `ledger` and its commands; every option's help states its default."""
    parser = argparse.ArgumentParser(prog="ledger", description=DESCRIPTION, epilog=EPILOG)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = _add_command(
        commands,
        "serve",
        "apply the pending migrations, then serve HTTP until Ctrl-C or SIGTERM",
    )
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: %(default)s)")
    serve.add_argument(
        "--port", type=int, default=8000, help="the TCP port to listen on (default: %(default)s)"
    )
    serve.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="server processes sharing the port, each with its own database pool (default: %(default)s)",
    )

    _add_command(commands, "migrate", "apply the pending migrations to the database and exit")

    replay_command = _add_command(
        commands,
        "replay",
        "rebuild the projections from the event log and compare them with the live ones "
        "(exit 1 when they differ)",
    )
    replay_command.add_argument(
        "--apply",
        action="store_true",
        help="replace the live projections with the rebuild (default: only compare)",
    )
    replay_command.add_argument(
        "--from",
        dest="source",
        metavar="FILE",
        help="instead: build the projections from an export (- for standard input) into the empty "
        "database at --database-url, and print each balance and the checksum "
        "(default: replay the service's own log)",
    )
    replay_command.add_argument(
        "--database-url",
        metavar="URL",
        help="the empty database for --from (no default: required with --from)",
    )

    export_command = _add_command(
        commands,
        "export",
        "write the event feed as JSON Lines to standard output, secrets redacted",
    )
    export_command.add_argument(
        "--after",
        metavar="CURSOR",
        default="0",
        help="the feed cursor to start after, as <transaction>-<position>; 0 is the start "
        "(default: %(default)s)",
    )

    _add_command(
        commands,
        "verify",
        "check every stream's hash chain and head, and every webhook signature (exit 1 on a finding)",
    )
    return parser


def _add_command(commands: argparse._SubParsersAction, name: str, summary: str) -> argparse.ArgumentParser:
    return commands.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".")


# The runners ---------------------------------------------------------------------------------


@contextmanager
def database(settings: Settings) -> Iterator[str]:
    """Yield the database URL: LEDGER_DATABASE_URL, or the embedded PostgreSQL (stopped after);
    raise EmbeddedPostgresNotInstalledError."""
    if settings.database_url:
        yield settings.database_url
        return
    with db.embedded_postgres(settings.data_dir) as url:
        yield url


def run_serve(settings: Settings, host: str, port: int, workers: int) -> int:
    if settings.uses_public_webhook_secret:
        log.warning(
            "LEDGER_WEBHOOK_SECRETS holds the public example secret: anyone can sign payments. "
            "Set your own secret in production."
        )
    with database(settings) as url:
        refusals = prepare_database(settings, url)
        if refusals:
            for refusal in refusals:
                print(f"ledger serve: {refusal}", file=sys.stderr)
            return 2
        return server.serve(settings, url, host, port, workers)


def prepare_database(settings: Settings, url: str) -> list[str]:
    """Migrate (as the owner) or check that nothing is pending; in production, or behind a
    transaction pooler, return why the database refuses to be served (none: it may be served).

    The owner migrates: LEDGER_OWNER_DATABASE_URL, or else the serving URL itself (development,
    the embedded default). In production without an owner URL the serving login only checks
    that `ledger migrate` has run: it may not change the schema. Behind a transaction pooler
    neither does it: the migrations hold a session's advisory lock, which the pooler would
    leave on whichever server connection took it.
    """
    production = f"LEDGER_ENV={PRODUCTION}: "
    refusals = [production + r for r in db.serving_login_refusals(url)] if settings.is_production else []
    if settings.database_pooler:
        refusals += db.pooled_session_refusals(url, settings.statement_timeout_s)
    if settings.owner_database_url is None and (settings.is_production or settings.database_pooler):
        pending = db.pending_migrations(url, settings.migrations_dir)
        if pending:
            why = production if settings.is_production else "LEDGER_DATABASE_POOLER=transaction: "
            refusals.append(
                f"{why}{len(pending)} migration(s) are not applied: run `ledger migrate` with the owner's "
                "URL in LEDGER_OWNER_DATABASE_URL (or give it to `ledger serve` too)"
            )
        return refusals
    if refusals:
        return refusals
    applied = db.migrate(
        owner_url(settings, url), settings.migrations_dir, with_seeds=not settings.is_production
    )
    log.info("migrations applied: %s", ", ".join(applied) or "none pending")
    if settings.is_production:
        refusals += [production + r for r in db.seeded_user_refusals(url)]
    return refusals


def owner_url(settings: Settings, url: str) -> str:
    """Return the URL of the tables' owner: LEDGER_OWNER_DATABASE_URL, else the database's URL."""
    return settings.owner_database_url or url


def run_migrate(settings: Settings) -> int:
    if settings.database_pooler and settings.owner_database_url is None:
        # See prepare_database: a session advisory lock, and yoyo's prepared statements.
        print(
            "ledger migrate: LEDGER_DATABASE_POOLER=transaction: migrations go straight to PostgreSQL, "
            "not through the pooler: set LEDGER_OWNER_DATABASE_URL to the owner's direct URL",
            file=sys.stderr,
        )
        return 2
    with database(settings) as url:
        applied = db.migrate(
            owner_url(settings, url), settings.migrations_dir, with_seeds=not settings.is_production
        )
    with reader_may_leave():
        print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")
    return 0


def run_replay(settings: Settings, apply_to_live: bool) -> int:
    with database(settings) as url:
        report, summary = asyncio.run(_replay(owner_url(settings, url), apply_to_live))
    with reader_may_leave():
        print(report.summary())
        for difference in report.differences:
            print(f"  {difference.projection}: {difference.side}: {difference.row}")
        if report.equal:
            # The balances' checksum, as `GET /audit/summary` and `ledger replay --from` give it,
            # read just after the comparison: the rebuild's too unless a payment came in between
            # (on a quiet database, a restored backup, it is the log's at that point).
            print(f"checksum {summary.checksum}")
    return 0 if report.equal else 1


async def _replay(url: str, apply_to_live: bool) -> tuple[ReplayReport, BalanceSummary]:
    # A fresh connection with no prepared statements: see rebuild.replay.
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, prepare_threshold=None) as conn:
        report = await replay(conn, apply_to_live=apply_to_live)
        return report, await live_balance_summary(conn)


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
    with reader_may_leave():
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
    with database(settings) as url, reader_may_leave():
        asyncio.run(_export(settings.replica_url or url, after))
    return 0


async def _export(url: str, after: feed.Cursor) -> None:
    # No prepared statements: the export's page query runs again and again, and psycopg would
    # prepare it, which a transaction pooler in front (LEDGER_DATABASE_POOLER) cannot carry.
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, prepare_threshold=None) as conn:
        progress = Progress(await feed.count_after(conn, after)) if sys.stderr.isatty() else None
        async for line in export.lines(conn, after):
            sys.stdout.write(line + "\n")
            if progress:
                progress.advance()
        if progress:
            progress.finish()


def run_verify(settings: Settings) -> int:
    with database(settings) as url:
        report = asyncio.run(_verify(settings.replica_url or url, settings.webhooks))
    with reader_may_leave():
        for finding in report.findings:
            print(finding)
        verdict = "intact" if report.intact else f"{len(report.findings)} finding(s)"
        print(f"verified {report.events} events in {report.streams} streams: {verdict}")
    return 0 if report.intact else 1


async def _verify(url: str, webhooks: Webhooks) -> VerifyReport:
    # No prepared statements, as in _export.
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, prepare_threshold=None) as conn:
        return await verify(conn, webhooks)


@contextmanager
def reader_may_leave() -> Iterator[None]:
    """Write to standard output in the block; if its reader stops reading (`ledger export | head
    -1`), stop writing quietly: that is a normal end, not an error, and the exit code stays the
    command's own."""
    try:
        yield
        sys.stdout.flush()  # inside the block: a pipe closed early fails here, not at exit
    except BrokenPipeError:
        # Python flushes standard output again as it exits, which would fail the same way: point
        # it at /dev/null first (the signal module's docs, "Note on SIGPIPE").
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


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
