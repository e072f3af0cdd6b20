"""Seeding a fresh bench database straight in SQL: users, their accounts, and (for the growth
run) a million payments, each written as the service writes it: the event in the log and the
projection rows it implies, so that `ledger replay` finds the projections equal to the log.

Going through HTTP would take hours (argon2 per user, one round trip per payment). Every seeded
user gets the same password, hashed once with the service's default argon2 cost, so that the
`login` scenario verifies real, default-cost hashes.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import psycopg
from argon2 import PasswordHasher

from ledger.config import Argon2Cost

PASSWORD = "bench password"
FIRST_USER_ID = 3  # sql/0004 seeds users 1 and 2

INSERT_USER_EVENTS = """
    INSERT INTO events (stream, type, data)
    SELECT 'user-' || id, 'UserRegistered',
           jsonb_build_object('user_id', id, 'email', 'bench-' || id || '@example.com',
                              'full_name', 'Bench User ' || id, 'password_hash', %(password_hash)s::text,
                              'is_admin', false)
    FROM generate_series(%(first_user)s::bigint, %(last_user)s::bigint) AS id
    ORDER BY id
"""

INSERT_USERS = """
    INSERT INTO users (id, email, full_name, password_hash, is_admin, credentials_version)
    SELECT id, 'bench-' || id || '@example.com', 'Bench User ' || id, %(password_hash)s, false, 1
    FROM generate_series(%(first_user)s::bigint, %(last_user)s::bigint) AS id
"""

# User u owns accounts u * per_user .. u * per_user + per_user - 1 (u >= 3: never account 1).
INSERT_ACCOUNT_EVENTS = """
    INSERT INTO events (stream, type, data)
    SELECT 'account-' || (u * %(per_user)s + j), 'AccountOpened',
           jsonb_build_object('account_id', u * %(per_user)s + j, 'user_id', u)
    FROM generate_series(%(first_user)s::bigint, %(last_user)s::bigint) AS u,
         generate_series(0, %(per_user)s - 1) AS j
    ORDER BY u, j
"""

INSERT_ACCOUNTS = """
    INSERT INTO accounts (id, user_id, balance)
    SELECT u * %(per_user)s + j, u, 0
    FROM generate_series(%(first_user)s::bigint, %(last_user)s::bigint) AS u,
         generate_series(0, %(per_user)s - 1) AS j
"""

ADVANCE_USER_IDS = "SELECT setval('user_ids', %(last_user)s)"

# Payments spread round-robin over every seeded account, amounts from 0.01 to 1000.00, each
# signed as the provider signs it (sql/0003 keeps the delivery as received). balance_after is
# the running balance of the account, as receive_payment() would have recorded it.
INSERT_PAYMENTS = """
    WITH source AS (
        SELECT n, user_id, user_id * %(per_user)s + slot %% %(per_user)s AS account_id,
               %(prefix)s || n AS transaction_id,
               COALESCE(%(amount)s::numeric,
                        ((1 + (n * 7919) %% 100000) / 100.0))::numeric(20,2) AS amount
        FROM generate_series(1, %(events)s::bigint) AS n,
             LATERAL (SELECT n %% %(accounts)s AS slot) AS s,
             LATERAL (SELECT %(first_user)s + slot / %(per_user)s AS user_id) AS o
    ), appended AS (
        INSERT INTO events (stream, type, data, transaction_id)
        SELECT 'account-' || account_id, 'PaymentReceived',
               jsonb_build_object(
                   'transaction_id', transaction_id, 'user_id', user_id, 'account_id', account_id,
                   'amount', amount::text,
                   'signature', encode(sha256(
                       convert_to(account_id::text || amount::text || transaction_id || user_id::text, 'UTF8')
                       || %(secret)s::bytea), 'hex')),
               transaction_id
        FROM source
        ORDER BY n
        RETURNING position, transaction_id, (data->>'user_id')::bigint AS user_id,
                  (data->>'account_id')::bigint AS account_id, (data->>'amount')::numeric AS amount,
                  recorded_at
    )
    INSERT INTO payments (id, transaction_id, user_id, account_id, amount, balance_after, created_at)
    SELECT position, transaction_id, user_id, account_id, amount,
           sum(amount) OVER (PARTITION BY account_id ORDER BY position), recorded_at
    FROM appended
"""

CREDIT_SEEDED_PAYMENTS = """
    UPDATE accounts SET balance = accounts.balance + credited.total
    FROM (SELECT account_id, sum(amount) AS total FROM payments GROUP BY account_id) AS credited
    WHERE accounts.id = credited.account_id
"""

CREDIT_FUNDED_PAYMENTS = """
    UPDATE accounts SET balance = accounts.balance + credited.total
    FROM (SELECT account_id, sum(amount) AS total FROM payments WHERE transaction_id LIKE %(pattern)s
          GROUP BY account_id) AS credited
    WHERE accounts.id = credited.account_id
"""

SELECT_PAYMENTS_LIKE = "SELECT count(*) FROM payments WHERE transaction_id LIKE %(pattern)s"

SELECT_TOTALS = """
    SELECT (SELECT COALESCE(sum(balance), 0) FROM accounts),
           (SELECT COALESCE(sum((data->>'amount')::numeric), 0) FROM events WHERE type = 'PaymentReceived'),
           (SELECT count(*) FROM events)
"""


@dataclass(frozen=True)
class Population:
    users: int
    accounts_per_user: int

    @property
    def first_user(self) -> int:
        return FIRST_USER_ID

    @property
    def last_user(self) -> int:
        return FIRST_USER_ID + self.users - 1

    @property
    def accounts(self) -> int:
        return self.users * self.accounts_per_user

    def user_ids(self) -> range:
        return range(self.first_user, self.last_user + 1)

    def account_ids(self, user_id: int) -> range:
        return range(user_id * self.accounts_per_user, (user_id + 1) * self.accounts_per_user)

    def params(self) -> dict[str, int]:
        return {
            "first_user": self.first_user,
            "last_user": self.last_user,
            "per_user": self.accounts_per_user,
            "accounts": self.accounts,
        }


def default_cost_hash(password: str) -> str:
    """Return the argon2id hash of password at the service's default (production) cost."""
    cost = Argon2Cost()
    hasher = PasswordHasher(
        time_cost=cost.time_cost, memory_cost=cost.memory_cost_kib, parallelism=cost.parallelism
    )
    return hasher.hash(password)


def seed(database_url: str, population: Population, events: int, webhook_secret: bytes) -> None:
    """Add the population's users and accounts, then `events` payments, in one transaction."""
    params = {**population.params(), "password_hash": default_cost_hash(PASSWORD)}
    with psycopg.connect(database_url) as conn:
        conn.execute(INSERT_USER_EVENTS, params)
        conn.execute(INSERT_USERS, params)
        conn.execute(INSERT_ACCOUNT_EVENTS, params)
        conn.execute(INSERT_ACCOUNTS, params)
        conn.execute(ADVANCE_USER_IDS, params)
        if events:
            seeded = {**params, "events": events, "secret": webhook_secret, "amount": None, "prefix": "seed-"}
            conn.execute(INSERT_PAYMENTS, seeded)
            conn.execute(CREDIT_SEEDED_PAYMENTS)
    # Fresh statistics, as a database that grew to this size over time would have.
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def fund(database_url: str, population: Population, webhook_secret: bytes, amount: Decimal) -> None:
    """Pay amount into every seeded account (one signed payment each), so that transfers have
    money to move."""
    params = {
        **population.params(),
        "events": population.accounts,
        "secret": webhook_secret,
        "amount": amount,
    }
    with psycopg.connect(database_url) as conn:
        conn.execute(INSERT_PAYMENTS, {**params, "prefix": "fund-"})
        conn.execute(CREDIT_FUNDED_PAYMENTS, {"pattern": "fund-%"})
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def ledger_total(database_url: str) -> Decimal:
    """Return the sum of every account's balance, system accounts included: 0.00 in double entry."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT sum(balance) FROM ledger_balances").fetchone()
    assert row is not None
    return row[0]


def totals(database_url: str) -> tuple[Decimal, Decimal, int]:
    """Return (sum of balances, sum of PaymentReceived amounts in the log, events in the log)."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(SELECT_TOTALS).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def count_payments_like(database_url: str, pattern: str) -> int:
    """Return how many payments have a transaction id LIKE pattern."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(SELECT_PAYMENTS_LIKE, {"pattern": pattern}).fetchone()
    assert row is not None
    return row[0]
