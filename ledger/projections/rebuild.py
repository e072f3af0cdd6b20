"""Rebuild every projection from the event log alone, and compare it with the live tables.

The rebuild writes into temporary tables named like the live ones: PostgreSQL looks in the
session's temporary schema first, so the same unqualified SQL (and apply_user_event(), the
function of the live writes, sql/0022) fills them, and the live tables are not touched. With
apply_to_live, the live tables are emptied and rebuilt instead, under a lock that makes
writers wait.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from psycopg import AsyncConnection, IsolationLevel
from psycopg.rows import class_row

from ledger import db
from ledger.projections.accounts import AccountView
from ledger.projections.past import EVERYTHING, Cut
from ledger.projections.users import UserView

# The users rebuild updates rows by id, so it keeps the indexes; accounts and payments are
# filled in bulk, and an index kept up to date row by row would cost more than the rebuild.
CREATE_REBUILD_TABLES = (
    "CREATE TEMP TABLE users (LIKE public.users INCLUDING ALL) ON COMMIT DROP",
    "CREATE TEMP TABLE accounts (LIKE public.accounts INCLUDING DEFAULTS) ON COMMIT DROP",
    "CREATE TEMP TABLE payments (LIKE public.payments INCLUDING DEFAULTS) ON COMMIT DROP",
    "CREATE TEMP TABLE transfers (LIKE public.transfers INCLUDING DEFAULTS) ON COMMIT DROP",
    "CREATE TEMP TABLE reversals (LIKE public.reversals INCLUDING DEFAULTS) ON COMMIT DROP",
)


LOCK_AND_EMPTY_LIVE_TABLES = (
    "LOCK TABLE public.users, public.accounts, public.payments, public.transfers, public.reversals "
    "IN ACCESS EXCLUSIVE MODE",
    "TRUNCATE public.reversals, public.transfers, public.payments, public.accounts, public.users",
)

# The balance rule over the log (balances_in_log(), sql/definitions/20-event-data.sql), and
# its running form for the balance after each posting (postings_in_log()): the rebuild restates
# neither. Users' accounts only: a system account's balance is computed when read.
INSERT_ACCOUNTS_FROM_LOG = """
    INSERT INTO accounts (id, user_id, balance)
    SELECT account_id, user_id, balance
    FROM balances_in_log(%(through_position)s, %(through_time)s, NULL, NULL)
    WHERE user_id IS NOT NULL
"""

CREATE_REBUILT_POSTINGS = """
    CREATE TEMP TABLE rebuilt_postings ON COMMIT DROP AS
    SELECT * FROM postings_in_log(%(through_position)s, %(through_time)s)
"""

INSERT_PAYMENTS_FROM_LOG = """
    INSERT INTO payments (id, transaction_id, user_id, account_id, amount, balance_after, created_at)
    SELECT p.position, p.transaction_id, p.user_id, p.account_id, p.amount, posted.balance_after,
           p.recorded_at
    FROM log_payments AS p
    JOIN rebuilt_postings AS posted ON posted.posted_at = p.position AND posted.account_id = p.account_id
"""

INSERT_TRANSFERS_FROM_LOG = """
    INSERT INTO transfers (id, position, user_id, idempotency_key, from_account_id, to_account_id, amount,
                           from_balance_after, to_balance_after, created_at)
    SELECT t.transfer_id, t.position, t.user_id, t.idempotency_key, t.from_account_id, t.to_account_id,
           t.amount, from_leg.balance_after, to_leg.balance_after, t.recorded_at
    FROM log_transfers AS t
    JOIN rebuilt_postings AS from_leg
      ON from_leg.posted_at = t.position AND from_leg.account_id = t.from_account_id
    JOIN rebuilt_postings AS to_leg
      ON to_leg.posted_at = t.position AND to_leg.account_id = t.to_account_id
"""

INSERT_REVERSALS_FROM_LOG = """
    INSERT INTO reversals (id, position, payment_id, user_id, idempotency_key, account_id, amount, reason,
                           balance_after, created_at)
    SELECT r.reversal_id, r.position, r.payment_id, r.user_id, r.idempotency_key, r.account_id, r.amount,
           r.reason, leg.balance_after, r.recorded_at
    FROM log_reversals AS r
    JOIN rebuilt_postings AS leg ON leg.posted_at = r.position AND leg.account_id = r.account_id
"""

# Double entry: the balances the log gives sum to zero, system accounts included; and so do
# the balances the service keeps (users' accounts in accounts, system accounts computed).
SELECT_BALANCE_TOTALS = """
    SELECT (SELECT COALESCE(sum(balance), 0) FROM balances_in_log(NULL, NULL, NULL, NULL)),
           (SELECT COALESCE(sum(balance), 0) FROM public.ledger_balances)
"""

# Rows of one side missing from the other, or different, for each projection (the temporary
# tables are the rebuild, public.* the live tables): one hash join on the key per projection.
# A user row is printed with its password hash redacted (redacted(), sql/0005), as the feed
# and exports show it.
SELECT_DIFFERENCES = """
    SELECT projection, side, row
    FROM (
        SELECT 'users' AS projection,
               redacted(to_jsonb(r))::text AS rebuilt, redacted(to_jsonb(l))::text AS live
        FROM pg_temp.users AS r FULL JOIN public.users AS l ON r.id = l.id
        WHERE ROW(r.*) IS DISTINCT FROM ROW(l.*)
        UNION ALL
        SELECT 'accounts', row_to_json(r)::text, row_to_json(l)::text
        FROM pg_temp.accounts AS r FULL JOIN public.accounts AS l ON r.id = l.id
        WHERE ROW(r.*) IS DISTINCT FROM ROW(l.*)
        UNION ALL
        SELECT 'payments', row_to_json(r)::text, row_to_json(l)::text
        FROM pg_temp.payments AS r FULL JOIN public.payments AS l ON r.id = l.id
        WHERE ROW(r.*) IS DISTINCT FROM ROW(l.*)
        UNION ALL
        SELECT 'transfers', row_to_json(r)::text, row_to_json(l)::text
        FROM pg_temp.transfers AS r FULL JOIN public.transfers AS l ON r.id = l.id
        WHERE ROW(r.*) IS DISTINCT FROM ROW(l.*)
        UNION ALL
        SELECT 'reversals', row_to_json(r)::text, row_to_json(l)::text
        FROM pg_temp.reversals AS r FULL JOIN public.reversals AS l ON r.id = l.id
        WHERE ROW(r.*) IS DISTINCT FROM ROW(l.*)
    ) AS differing
    CROSS JOIN LATERAL (VALUES ('only in rebuild', rebuilt), ('only in live', live)) AS sides (side, row)
    WHERE row IS NOT NULL
    LIMIT %(limit)s
"""

SELECT_REBUILT_TOTALS = """
    SELECT (SELECT count(*) FROM events),
           (SELECT count(*) FROM users),
           (SELECT count(*) FROM accounts),
           (SELECT count(*) FROM payments),
           (SELECT COALESCE(sum(balance), 0) FROM accounts)
"""

# Unqualified, like the rebuild itself: during a rebuild into temporary tables these read the
# rebuild, otherwise the tables just rebuilt in place.
SELECT_LIVE_USERS = """
    SELECT id, email, full_name, is_admin, is_auditor, credentials_version
    FROM users WHERE NOT deleted ORDER BY id
"""

SELECT_ACCOUNTS = "SELECT id, user_id, balance FROM accounts ORDER BY id"

APPLY_USER_EVENTS_FROM_LOG = "SELECT apply_user_events(%(through_position)s, %(through_time)s)"


@dataclass(frozen=True)
class Difference:
    projection: str
    side: str
    row: str


@dataclass(frozen=True)
class ReplayReport:
    events: int
    users: int
    accounts: int
    payments: int
    balance_total: Decimal
    differences: list[Difference]

    @property
    def equal(self) -> bool:
        return not self.differences

    def summary(self) -> str:
        verdict = "projections equal the rebuild" if self.equal else "projections DIFFER from the rebuild"
        return (
            f"replayed {self.events} events: {self.users} users, {self.accounts} accounts, "
            f"{self.payments} payments, balances total {self.balance_total}; {verdict}"
        )


async def replay(
    conn: AsyncConnection, *, apply_to_live: bool = False, difference_limit: int = 20
) -> ReplayReport:
    """Rebuild the projections from the log and compare them with the live ones.

    With apply_to_live, the live projections are replaced by the rebuild (and so equal it).
    conn must be a fresh connection outside any transaction: no plan of it may be cached
    against the live tables while temporary ones shadow them.
    """
    # Comparing: REPEATABLE READ, so the log and the live tables are read as of one snapshot
    # while payments keep arriving. Applying: READ COMMITTED, so that once the lock is held
    # every statement sees all that committed before it.
    if not apply_to_live:
        await conn.set_isolation_level(IsolationLevel.REPEATABLE_READ)
    try:
        async with conn.transaction():
            if apply_to_live:
                for statement in LOCK_AND_EMPTY_LIVE_TABLES:
                    await conn.execute(statement)
            else:
                for statement in CREATE_REBUILD_TABLES:
                    await conn.execute(statement)
            await rebuild(conn)
            cursor = await conn.execute(SELECT_REBUILT_TOTALS)
            totals = await cursor.fetchone()
            assert totals is not None
            differences: list[Difference] = []
            if not apply_to_live:
                cursor = await conn.execute(SELECT_DIFFERENCES, {"limit": difference_limit})
                differences = [Difference(*row) for row in await cursor.fetchall()]
            differences += await _unbalanced(conn)
            events, user_count, account_count, payment_count, balance_total = totals
            return ReplayReport(events, user_count, account_count, payment_count, balance_total, differences)
    finally:
        await conn.set_isolation_level(None)


async def _unbalanced(conn: AsyncConnection) -> list[Difference]:
    """Return a difference for each side whose balances do not sum to zero (none: balanced)."""
    cursor = await conn.execute(SELECT_BALANCE_TOTALS)
    row = await cursor.fetchone()
    assert row is not None
    log_total, kept_total = row
    return [
        Difference("ledger", side, f"every account's balance sums to {total}, not 0.00")
        for side, total in (("the log", log_total), ("the projections", kept_total))
        if total != 0
    ]


async def rebuild(conn: AsyncConnection, cut: Cut = EVERYTHING) -> None:
    """Fill the (empty) projection tables that unqualified names resolve to from the log,
    up to the cut."""
    await conn.execute(APPLY_USER_EVENTS_FROM_LOG, cut.params)
    await conn.execute(db.SET_BULK_WORK_MEM)
    await conn.execute(INSERT_ACCOUNTS_FROM_LOG, cut.params)
    await conn.execute(CREATE_REBUILT_POSTINGS, cut.params)
    await conn.execute(INSERT_PAYMENTS_FROM_LOG)
    await conn.execute(INSERT_TRANSFERS_FROM_LOG)
    await conn.execute(INSERT_REVERSALS_FROM_LOG)


@dataclass(frozen=True)
class RebuiltState:
    users: list[UserView]
    accounts: list[AccountView]


async def rebuild_at(conn: AsyncConnection, cut: Cut) -> RebuiltState:
    """Return the live users and all accounts as a replay of the log up to the cut makes them.

    The rebuild goes into temporary tables, dropped at the end; nothing live is touched.
    conn: as for replay().
    """
    async with conn.transaction():
        for statement in CREATE_REBUILD_TABLES:
            await conn.execute(statement)
        await rebuild(conn, cut)
        async with conn.cursor(row_factory=class_row(UserView)) as cursor:
            await cursor.execute(SELECT_LIVE_USERS)
            live_users = await cursor.fetchall()
        async with conn.cursor(row_factory=class_row(AccountView)) as cursor:
            await cursor.execute(SELECT_ACCOUNTS)
            rebuilt_accounts = await cursor.fetchall()
    return RebuiltState(live_users, rebuilt_accounts)
