"""`python -m bench.sql_profile`: where receive_payment()'s time goes inside PostgreSQL.

pgbench runs the service's own statement for one delivery (bench.ceiling.webhook_script) on a
fresh, seeded database, against the full function and against variants that each leave ONE
step out: copies of the function under another name (receive_payment_without_<step>), built
in the bench database from the body in sql/definitions/40-payments.sql by removing that step's
text, which must be found exactly once (so that a changed body fails loudly instead of
measuring something else); `receive_payment_bare` leaves them all out at once. A per-row
INSERT trigger on events (found in pg_trigger) is left out in a fresh database of its own
where it is dropped. The real definitions are never touched. The smallest idempotent credit
(bench.ceiling's yardstick) runs beside them. Every variant must still record each delivery
it is sent (`credited`), so that none looks faster by answering 'seen' or 'user_not_found'.

The variants take turns in rounds, each round in another order, so that whatever else loads
the shared machine falls on all of them alike; each variant's rate is compared with the full
function's in the same round. A step's implied share of the cost is 1 - full/variant: the
part of a payment's time that leaving the step out saves, at this concurrency.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import simplejson
from psycopg import sql

from bench import ceiling, seed
from bench.figures import markdown_table, median_or_none, ratio
from bench.run import database_server, fresh_database
from bench.seed import Population
from ledger.config import REPO_ROOT

DEFINITION = REPO_ROOT / "sql" / "definitions" / "40-payments.sql"
FUNCTION_START = "CREATE OR REPLACE FUNCTION receive_payment(\n"
FUNCTION_END = "\n$$;\n"
FULL = "full"
YARDSTICK = "yardstick"
BARE = "bare"


@dataclass(frozen=True)
class Removal:
    """One step of receive_payment(): its text in the body (found exactly once), or the text
    from `start` up to `until`, and what stands in its place (nothing, unless a later step
    needs a value)."""

    step: str
    describes: str
    start: str
    until: str = ""
    replacement: str = ""


REMOVALS = (
    Removal(
        "definer",
        "SECURITY DEFINER and its SET search_path (a GUC saved and restored per call)",
        "LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp"
        " SET enable_seqscan = off AS $$\n",
        replacement="LANGUAGE plpgsql SET enable_seqscan = off AS $$\n",
    ),
    Removal(
        "guards",
        "the argument and delivery checks at the top (amount, delivery = payment, isolation)",
        "    -- Guards, not input validation",
        until="    -- Deliveries of the same transaction_id take turns",
    ),
    Removal(
        "lock",
        "pg_advisory_xact_lock on the transaction id",
        "    PERFORM pg_advisory_xact_lock(1818520933, hashtext(p_transaction_id));  -- 1818520933: 'ledg'\n",
    ),
    Removal(
        "redelivery_lookup",
        "the look-up of an earlier delivery in payments",
        "    RETURN QUERY\n"
        "        SELECT 'seen', p.id, p.user_id, p.account_id, p.amount, p.balance_after\n"
        "        FROM payments AS p\n"
        "        WHERE p.transaction_id = p_transaction_id;\n"
        "    IF FOUND THEN\n"
        "        RETURN;\n"
        "    END IF;\n",
    ),
    Removal(
        "user_lookup",
        "the user's row, FOR SHARE",
        "    PERFORM 1 FROM users AS u WHERE u.id = p_user_id AND NOT u.deleted FOR SHARE;\n",
        until="    INSERT INTO accounts (id, user_id, balance)",
    ),
    Removal(
        "account_open",
        "INSERT INTO accounts ... ON CONFLICT DO NOTHING (opening an account on first payment)",
        "    INSERT INTO accounts (id, user_id, balance) VALUES (p_account_id, p_user_id, 0)\n",
        until="    -- The account row lock orders concurrent credits of one account.",
    ),
    Removal(
        "account_lookup",
        "the account's row FOR UPDATE and the owner check",
        "    SELECT a.user_id INTO v_owner FROM accounts AS a WHERE a.id = p_account_id FOR UPDATE;\n",
        until="    -- The delivery's key is spent here",
    ),
    Removal(
        "delivery_key",
        "INSERT INTO delivery_keys (spending the signature)",
        "    INSERT INTO delivery_keys (key, transaction_id) VALUES (delivery_key(p_delivery), ",
        until="    INSERT INTO events (stream, type, data, transaction_id)",
    ),
    Removal(
        "payments_insert",
        "INSERT INTO payments (the projection row)",
        "    INSERT INTO payments (id, transaction_id, user_id, account_id, amount, balance_after, ",
        until="    RETURN QUERY SELECT 'credited'",
    ),
    Removal(
        "balance_update",
        "UPDATE accounts SET balance (payments.balance_after then gets the amount)",
        "    UPDATE accounts SET balance = accounts.balance + p_amount\n"
        "    WHERE id = p_account_id\n"
        "    RETURNING accounts.balance INTO v_balance;\n",
        replacement="    v_balance := p_amount;\n",  # payments.balance_after is NOT NULL
    ),
)

# The per-row triggers on events that fire on INSERT (enabled, not a constraint's own).
SELECT_EVENT_INSERT_TRIGGERS = """
    SELECT t.tgname
    FROM pg_trigger AS t
    WHERE t.tgrelid = 'public.events'::regclass AND NOT t.tgisinternal AND t.tgenabled <> 'D'
      AND (t.tgtype & 1) = 1 AND (t.tgtype & 4) = 4
    ORDER BY t.tgname
"""
# Every trigger on the tables one payment writes, internal ones (foreign keys) included.
SELECT_TRIGGERS = """
    SELECT c.relname, t.tgname, t.tgisinternal, pg_get_triggerdef(t.oid)
    FROM pg_trigger AS t JOIN pg_class AS c ON c.oid = t.tgrelid
    WHERE c.relnamespace = 'public'::regnamespace
      AND c.relname IN ('events', 'stream_heads', 'accounts', 'payments', 'delivery_keys', 'users')
    ORDER BY c.relname, t.tgname
"""
# Columns a trigger fills, NOT NULL in the schema: nothing fills them once it is dropped.
FILLED_BY_TRIGGER = {"events_chain": ("stream_version", "hash")}
DROP_TRIGGER = "DROP TRIGGER {trigger} ON events"
DROP_NOT_NULL = "ALTER TABLE events ALTER COLUMN {column} DROP NOT NULL"
SELECT_SERVER_SETTINGS = """
    SELECT name, setting FROM pg_settings
    WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers', 'server_version')
    ORDER BY name
"""
SELECT_CREDITED = "SELECT count(*) FROM events WHERE transaction_id LIKE %(pattern)s"
SELECT_YARDSTICK_CREDITED = "SELECT count(*) FROM yardstick.events WHERE transaction_id LIKE %(pattern)s"


def function_text() -> str:
    """Return the CREATE statement of receive_payment() as sql/definitions holds it; raise
    ValueError when it is not found exactly once."""
    text = DEFINITION.read_text()
    if text.count(FUNCTION_START) != 1:
        raise ValueError(f"{DEFINITION}: {FUNCTION_START.strip()!r} is not there exactly once")
    start = text.index(FUNCTION_START)
    end = text.index(FUNCTION_END, start) + len(FUNCTION_END)
    return text[start:end]


def replace_once(text: str, old: str, new: str, what: str) -> str:
    """Return text with old replaced by new; raise ValueError unless old occurs exactly once."""
    found = text.count(old)
    if found != 1:
        raise ValueError(f"{what}: {old.strip()[:80]!r} found {found} times, not once")
    return text.replace(old, new)


def without(function: str, removal: Removal) -> str:
    """Return the CREATE statement function without removal's step; raise ValueError when its
    text is not found exactly once."""
    what = f"{DEFINITION.name}, step {removal.step}"
    if not removal.until:
        return replace_once(function, removal.start, removal.replacement, what)
    replace_once(function, removal.start, removal.start, what)  # each exactly once, in order
    replace_once(function, removal.until, removal.until, what)
    start = function.index(removal.start)
    end = function.index(removal.until)
    if end <= start:
        raise ValueError(f"{what}: {removal.until.strip()!r} comes before {removal.start.strip()!r}")
    return function[:start] + removal.replacement + function[end:]


def renamed(function: str, name: str) -> str:
    """Return the CREATE statement of receive_payment() creating the same function as name."""
    return replace_once(
        function, FUNCTION_START, FUNCTION_START.replace("receive_payment(", f"{name}("), name
    )


def variant_function(full: str, removal: Removal) -> tuple[str, str]:
    """Return (name, CREATE statement) of the copy of receive_payment() without one step."""
    name = f"receive_payment_without_{removal.step}"
    return name, renamed(without(full, removal), name)


def bare_function(full: str) -> tuple[str, str]:
    """Return (name, CREATE statement) of the copy without every step of REMOVALS at once: what
    is left is the append of the event (its triggers included) and the answer."""
    name = f"receive_payment_{BARE}"
    function = full
    for removal in REMOVALS:
        function = without(function, removal)
    return name, renamed(function, name)


def calling_script(population: Population, function: str) -> str:
    """Return the webhook's pgbench script, calling function instead of receive_payment()."""
    script = ceiling.webhook_script(population)
    if function == "receive_payment":
        return script
    return replace_once(script, "receive_payment(", f"{function}(", "the webhook's pgbench script")


@dataclass
class Variant:
    name: str
    removes: str
    database_url: str
    script: str
    yardstick: bool = False


@contextmanager
def prepared_database(server_url: str, population: Population, secret: bytes) -> Iterator[str]:
    """Yield a fresh, migrated, seeded database (payments none yet), dropped afterwards."""
    with fresh_database(server_url) as url:
        seed.seed(url, population, 0, secret)
        yield url


def _round_order(variants: list[Variant], round_number: int, rounds: int) -> list[Variant]:
    """Each round starts at another variant, so that none always runs first or last."""
    shift = round_number * len(variants) // rounds
    return variants[shift:] + variants[:shift]


def profile(
    database_url: str | None,
    population: Population,
    concurrency: int,
    duration_s: float,
    rounds: int,
) -> dict[str, Any]:
    """Measure the full receive_payment(), its one-step-less variants and the yardstick; return the report."""
    secret = b"bench-webhook-" + secrets.token_hex(8).encode()
    run_id = uuid.uuid4().hex[:8]
    report: dict[str, Any] = {
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "settings": {
            "concurrency": concurrency,
            "duration_s_per_variant_per_round": duration_s,
            "rounds": rounds,
            "users": population.users,
            "accounts": population.accounts,
        },
    }
    with ExitStack() as stack:
        server_url, kind = stack.enter_context(database_server(database_url))
        report["settings"]["database"] = kind
        url = stack.enter_context(prepared_database(server_url, population, secret))
        ceiling.create_yardstick(url)
        full = function_text()
        variants = [
            Variant(
                FULL,
                "nothing: receive_payment() as defined",
                url,
                calling_script(population, "receive_payment"),
            )
        ]
        with psycopg.connect(url, autocommit=True) as conn:
            for removal in REMOVALS:
                name, statement = variant_function(full, removal)
                conn.execute(statement.encode())
                variants.append(Variant(name, removal.describes, url, calling_script(population, name)))
            name, statement = bare_function(full)
            conn.execute(statement.encode())
            removes = (
                "every step above at once: left are the event's append (its triggers too) and the answer"
            )
            variants.append(Variant(name, removes, url, calling_script(population, name)))
            triggers = [row[0] for row in conn.execute(SELECT_EVENT_INSERT_TRIGGERS)]
            report["settings"]["server"] = dict(conn.execute(SELECT_SERVER_SETTINGS).fetchall())
            report["triggers"] = [
                {"table": table, "trigger": trigger, "internal": internal, "definition": definition}
                for table, trigger, internal, definition in conn.execute(SELECT_TRIGGERS)
            ]
        for trigger in triggers:
            trigger_url = stack.enter_context(prepared_database(server_url, population, secret))
            with psycopg.connect(trigger_url, autocommit=True) as conn:
                conn.execute(sql.SQL(DROP_TRIGGER).format(trigger=sql.Identifier(trigger)))
                for column in FILLED_BY_TRIGGER.get(trigger, ()):
                    conn.execute(sql.SQL(DROP_NOT_NULL).format(column=sql.Identifier(column)))
            removes = f"the {trigger} trigger on events (a fresh database without it)"
            if trigger in FILLED_BY_TRIGGER:
                removes += f"; {', '.join(FILLED_BY_TRIGGER[trigger])} left NULL"
            variants.append(
                Variant(
                    f"without_trigger_{trigger}",
                    removes,
                    trigger_url,
                    calling_script(population, "receive_payment"),
                )
            )
        variants.append(
            Variant(YARDSTICK, "everything but an idempotent insert and a balance update (bench.ceiling)",
                    url, ceiling.yardstick_script(population), yardstick=True)
        )  # fmt: skip

        measured: dict[str, list[dict[str, Any]]] = {variant.name: [] for variant in variants}
        for round_number in range(rounds):
            for variant in _round_order(variants, round_number, rounds):
                run = f"{run_id}v{variants.index(variant)}r{round_number}"
                variables = {"n": "0", "run": run, "secret": secret.decode()}
                result = ceiling.run_pgbench(
                    variant.database_url, variant.script, concurrency, duration_s, variables
                )
                select = SELECT_YARDSTICK_CREDITED if variant.yardstick else SELECT_CREDITED
                with psycopg.connect(variant.database_url) as conn:
                    row = conn.execute(select, {"pattern": f"pgb-{run}-%"}).fetchone()
                assert row is not None
                measured[variant.name].append(
                    {
                        "tps": result.rps,
                        "transactions": result.requests,
                        "errors": result.errors,
                        "credited": row[0],
                    }
                )
    report["load_after"] = [round(x, 2) for x in os.getloadavg()]
    report["variants"] = summary(variants, measured)
    return report


def summary(variants: list[Variant], measured: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Return each variant's median rate, its ratio to the full function round by round, and
    the implied share of the cost of what it leaves out."""
    full_rounds = measured[FULL]
    result: dict[str, Any] = {}
    for variant in variants:
        rounds = measured[variant.name]
        ratios = [ratio(r["tps"], f["tps"]) for r, f in zip(rounds, full_rounds, strict=True)]
        median_ratio = median_or_none(ratios)
        result[variant.name] = {
            "removes": variant.removes,
            "tps": median_or_none([r["tps"] for r in rounds]),
            "tps_per_round": [round(r["tps"], 1) for r in rounds],
            "ratio_to_full": median_ratio,
            "ratio_to_full_per_round": ratios,
            "share_of_cost": round(1 - 1 / median_ratio, 3) if median_ratio else None,
            "transactions": sum(r["transactions"] for r in rounds),
            "credited": sum(r["credited"] for r in rounds),
            "errors": sum(r["errors"] for r in rounds),
        }
    return result


def table(report: dict[str, Any]) -> str:
    """Return the report as a Markdown table, with the load it ran under."""
    header = (
        "variant",
        "tps (median)",
        "ratio to full",
        "ratio per round",
        "share of cost",
        "errors",
        "credited",
    )
    rows = [header]
    for name, figures in report["variants"].items():
        share = figures["share_of_cost"]
        rows.append(
            (
                name,
                f"{figures['tps']:.0f}" if figures["tps"] is not None else "",
                f"{figures['ratio_to_full']:.2f}" if figures["ratio_to_full"] is not None else "",
                " ".join(f"{r:.2f}" if r is not None else "-" for r in figures["ratio_to_full_per_round"]),
                "" if name == FULL or share is None else f"{share:+.0%}",
                str(figures["errors"]),
                "all"
                if figures["credited"] == figures["transactions"]
                else f"{figures['credited']}/{figures['transactions']}",
            )
        )
    lines = markdown_table(rows)
    settings = report["settings"]
    lines.append("")
    lines.append(
        f"c={settings['concurrency']}, {settings['rounds']} rounds x "
        f"{settings['duration_s_per_variant_per_round']:g} s "
        f"per variant, {settings['users']} users / {settings['accounts']} accounts, {report['cpus']} CPUs; "
        f"load average {report['load_before']} before, {report['load_after']} after"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sql_profile", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server where databases can be created (default: start an embedded one)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument(
        "--duration", type=float, default=5.0, help="seconds per variant per round (default 5)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="default 3")
    parser.add_argument("--concurrency", type=int, default=32, help="pgbench clients (default 32)")
    parser.add_argument("--users", type=int, default=1000, help="seeded users (default 1000)")
    parser.add_argument("--accounts-per-user", type=int, default=2, help="default 2")
    args = parser.parse_args(argv)
    report = profile(
        args.database_url,
        Population(args.users, args.accounts_per_user),
        args.concurrency,
        args.duration,
        args.rounds,
    )
    print(simplejson.dumps(report, indent=2) if args.json else table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
