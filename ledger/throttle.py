"""Throttles, counted in PostgreSQL: login attempts per email and per client address, and
registrations per client address.

A key may be counted its maximum times in a window that starts at its first count; past that,
every request on that key is refused (429), a login with the correct password included, until
the window ends. The counts live in the UNLOGGED table throttle_counts (sql/0023), so that
every worker process and every instance sees the same counts.

An attempt is counted before it is checked, in one statement that also says whether it is over
the limit: counted afterwards, eight concurrent guesses against a limit of three all reached
argon2 before any of them was counted. Emails are keyed by PostgreSQL's lower(), the function
the user lookup uses: lowered in Python, a spelling that PostgreSQL lowers alike (U+0130 for
"i") was another key for the same user.
"""

from __future__ import annotations

from psycopg import AsyncConnection

from ledger import errors
from ledger.config import LoginThrottle, RequestThrottle

# Counts one attempt on each key (a key whose window has ended starts a new one) and returns
# every count with the seconds its window has left. An email key is lowered here, by the
# lower() of the user lookup (ledger.projections.users). Also deletes a few rows whose window has
# ended (never the keys counted here: one statement may not both delete and update a row), so
# the table stays as small as the recent attempts.
COUNT_ATTEMPT = """
    WITH counted_keys AS (
        SELECT CASE WHEN given LIKE 'email:%%' THEN 'email:' || lower(substr(given, 7)) ELSE given END AS key
        FROM unnest(%(keys)s::text[]) AS given
    ), ended AS (
        DELETE FROM throttle_counts
        WHERE key IN (
            SELECT key FROM throttle_counts
            WHERE window_ends_at <= now() AND key NOT IN (SELECT key FROM counted_keys)
            LIMIT 20
            FOR UPDATE SKIP LOCKED
        )
    )
    INSERT INTO throttle_counts AS counted (key, attempts, window_ends_at)
    SELECT key, 1, now() + make_interval(secs => %(window_s)s)
    FROM counted_keys
    ON CONFLICT (key) DO UPDATE SET
        attempts = CASE WHEN counted.window_ends_at <= now() THEN 1 ELSE counted.attempts + 1 END,
        window_ends_at = CASE
            WHEN counted.window_ends_at <= now() THEN EXCLUDED.window_ends_at
            ELSE counted.window_ends_at
        END
    RETURNING key, attempts, ceil(extract(epoch FROM window_ends_at - now()))::integer
"""

# After a successful login: the email's count is forgotten, and the address's count takes this
# attempt back (not its other attempts: a client that knows one password must not clear the
# count of its guesses at other accounts). Two statements, each its own transaction, so that no
# statement holds one key's row while it waits for the other's: in one statement (a CTE) the
# address's row was locked before the email's, the opposite order of COUNT_ATTEMPT, and two
# logins of one user deadlocked.
FORGET_EMAIL = "DELETE FROM throttle_counts WHERE key = 'email:' || lower(%(email)s)"
TAKE_BACK_ADDRESS_ATTEMPT = """
    UPDATE throttle_counts SET attempts = attempts - 1
    WHERE key = 'address:' || %(address)s AND attempts > 0
"""


async def count_login_attempt(
    conn: AsyncConnection, policy: LoginThrottle, email: str, client_address: str
) -> None:
    """Count a login attempt on its email and its client address; raise TooManyAttemptsError
    when either is over its limit."""
    limits = {"email": policy.failures_per_email_max, "address": policy.failures_per_address_max}
    await _count(conn, ["email:" + email, "address:" + client_address], limits, policy.window_s)


async def forget_login(conn: AsyncConnection, email: str, client_address: str) -> None:
    """Forget the email's attempts after a successful login, and take this one back from the address."""
    await conn.execute(FORGET_EMAIL, {"email": email})
    await conn.execute(TAKE_BACK_ADDRESS_ATTEMPT, {"address": client_address})


async def count_registration(conn: AsyncConnection, policy: RequestThrottle, client_address: str) -> None:
    """Count a registration from client_address; raise TooManyAttemptsError past the limit."""
    limits = {"register": policy.requests_per_address_max}
    await _count(
        conn,
        ["register:" + client_address],
        limits,
        policy.window_s,
        "Too many registrations from this address; try again after the number of seconds in Retry-After.",
    )


async def _count(
    conn: AsyncConnection, keys: list[str], limits: dict[str, int], window_s: int, message: str | None = None
) -> None:
    """Count one attempt on each key; raise TooManyAttemptsError if any is over the limit of
    its kind (the part before the colon)."""
    cursor = await conn.execute(COUNT_ATTEMPT, {"keys": keys, "window_s": window_s})
    retry_after_s = 0
    for key, attempts, seconds_left in await cursor.fetchall():
        if attempts > limits[key.partition(":")[0]]:
            retry_after_s = max(retry_after_s, seconds_left, 1)
    if retry_after_s:
        raise errors.TooManyAttemptsError(message, retry_after_s=retry_after_s)
