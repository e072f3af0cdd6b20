"""The trial balance: every account's balance, grouped by kind (users' accounts, each system
account), and their total, which double entry makes 0.00, now or at a past cut of the log."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from psycopg import AsyncConnection
from psycopg.rows import class_row

from ledger.projections.past import Cut

# Now: the balances the service keeps (ledger_balances: users' accounts as kept, system
# accounts summed from their postings).
SELECT_TRIAL_BALANCE = """
    SELECT kind, count(*) AS accounts, COALESCE(sum(balance), 0)::numeric(20,2) AS balance
    FROM ledger_balances
    GROUP BY kind
    ORDER BY kind
"""

# At a cut: the balances the log gives there (balances_in_log(), the balance rule).
SELECT_TRIAL_BALANCE_AT_CUT = """
    SELECT COALESCE(s.kind, 'user') AS kind, count(*) AS accounts,
           COALESCE(sum(b.balance), 0)::numeric(20,2) AS balance
    FROM balances_in_log(%(through_position)s, %(through_time)s, NULL, NULL) AS b
    LEFT JOIN system_accounts AS s ON s.id = b.account_id
    GROUP BY 1
    ORDER BY 1
"""


@dataclass(frozen=True)
class KindBalance:
    kind: str  # 'user', or a system account's kind
    accounts: int
    balance: Decimal


@dataclass(frozen=True)
class TrialBalance:
    kinds: list[KindBalance]

    @property
    def total(self) -> Decimal:
        return sum((kind.balance for kind in self.kinds), Decimal("0.00"))


async def trial_balance(conn: AsyncConnection, cut: Cut | None = None) -> TrialBalance:
    """Return every kind of account's balance, now or at the cut."""
    query, params = (SELECT_TRIAL_BALANCE, {}) if cut is None else (SELECT_TRIAL_BALANCE_AT_CUT, cut.params)
    async with conn.cursor(row_factory=class_row(KindBalance)) as cursor:
        await cursor.execute(query, params)
        return TrialBalance(await cursor.fetchall())
