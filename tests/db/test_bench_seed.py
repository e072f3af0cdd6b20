"""The bench seeds its databases straight in SQL: the log it writes must be one the service
could have written. Replay finds the projections equal to the log, and every seeded payment
carries a valid signature."""

from __future__ import annotations

import psycopg

from bench import seed
from bench.seed import Population
from ledger import signatures
from ledger.projections.rebuild import replay

SECRET = b"seed-test-secret"
SELECT_SEEDED_PAYMENTS = "SELECT data FROM events WHERE type = 'PaymentReceived' ORDER BY position"


async def test_seeded_users_accounts_and_payments_replay_to_the_same_projections(own_database: str) -> None:
    population = Population(users=7, accounts_per_user=3)
    seed.seed(own_database, population, events=100, webhook_secret=SECRET)

    async with await psycopg.AsyncConnection.connect(
        own_database, autocommit=True, prepare_threshold=None
    ) as conn:
        report = await replay(conn)
        assert report.equal, report.differences
        assert report.users == 2 + 7 and report.accounts == 1 + 21 and report.payments == 100
        cursor = await conn.execute(SELECT_SEEDED_PAYMENTS)
        deliveries = [row[0] for row in await cursor.fetchall()]
    balances, logged, _ = seed.totals(own_database)
    assert balances == logged > 0
    for data in deliveries:
        signed = signatures.payload(
            str(data["account_id"]), data["amount"], data["transaction_id"], str(data["user_id"])
        )
        assert signatures.is_valid(signed, data["signature"], [SECRET]), data
        assert data["account_id"] in population.account_ids(data["user_id"])
