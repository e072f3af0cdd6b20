"""The login throttle: failed logins counted per email and per client address, in PostgreSQL.

A key (an email, a client address) may fail LoginThrottle's maximum times in a window that
starts at its first failure; after that every login on that key is refused, a correct password
included, until the window ends. The counts live in the UNLOGGED table login_failures
(sql/0020), so that every worker process and every instance sees the same counts.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import AsyncConnection

from ledger import errors
from ledger.config import LoginThrottle

SELECT_FAILURES = """
    SELECT key, failures, ceil(extract(epoch FROM window_ends_at - now()))::integer
    FROM login_failures
    WHERE key = ANY(%(keys)s) AND window_ends_at > now()
"""

# Counts one failure on each key: a key whose window has ended starts a new one. Also
# deletes a few rows whose window has ended (never the keys counted here: one statement may
# not both delete and update a row), so the table stays as small as the recent failures.
COUNT_FAILURE = """
    WITH ended AS (
        DELETE FROM login_failures
        WHERE key IN (
            SELECT key FROM login_failures
            WHERE window_ends_at <= now() AND key <> ALL(%(keys)s)
            LIMIT 20
            FOR UPDATE SKIP LOCKED
        )
    )
    INSERT INTO login_failures AS counted (key, failures, window_ends_at)
    SELECT key, 1, now() + make_interval(secs => %(window_s)s)
    FROM unnest(%(keys)s::text[]) AS key
    ON CONFLICT (key) DO UPDATE SET
        failures = CASE WHEN counted.window_ends_at <= now() THEN 1 ELSE counted.failures + 1 END,
        window_ends_at = CASE
            WHEN counted.window_ends_at <= now() THEN EXCLUDED.window_ends_at
            ELSE counted.window_ends_at
        END
"""

FORGET_FAILURES = "DELETE FROM login_failures WHERE key = %(key)s"


@dataclass(frozen=True)
class Keys:
    """The two keys of one login attempt."""

    email: str
    address: str

    @classmethod
    def of(cls, email: str, client_address: str) -> Keys:
        # Emails are compared case-insensitively, so they are counted that way too.
        return cls(email="email:" + email.lower(), address="address:" + client_address)


async def refuse_if_locked(conn: AsyncConnection, policy: LoginThrottle, keys: Keys) -> bool:
    """Return whether the email has failures to forget after a success; raise TooManyAttemptsError."""
    cursor = await conn.execute(SELECT_FAILURES, {"keys": [keys.email, keys.address]})
    retry_after_s = 0
    email_failed = False
    for key, failures, seconds_left in await cursor.fetchall():
        failures_max = policy.failures_per_email_max if key == keys.email else policy.failures_per_address_max
        email_failed = email_failed or key == keys.email
        if failures >= failures_max:
            retry_after_s = max(retry_after_s, seconds_left, 1)
    if retry_after_s:
        raise errors.TooManyAttemptsError(retry_after_s=retry_after_s)
    return email_failed


async def count_failure(conn: AsyncConnection, policy: LoginThrottle, keys: Keys) -> None:
    """Count one failed login on both keys."""
    await conn.execute(COUNT_FAILURE, {"keys": [keys.email, keys.address], "window_s": policy.window_s})


async def forget_failures(conn: AsyncConnection, keys: Keys) -> None:
    """Forget the email's failures after a successful login (not the address's: a client that
    knows one password must not clear the count of its guesses at other accounts)."""
    await conn.execute(FORGET_FAILURES, {"key": keys.email})
