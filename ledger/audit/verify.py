"""Tamper evidence: recompute every stream's hash chain, check it against the stream heads,
and check every stored webhook signature again.

Each event's hash is SHA-256 over its predecessor's hash (in the stream's version order) and
its own canonical content (sql/0005, event_hash). Changing an event breaks its own link;
removing one leaves a gap in the versions, or a head that points past the chain's end; adding
one leaves a version past the head or a broken link; moving one leaves its position out of
its version order. Each finding names the event.

All of it runs set-based in PostgreSQL, in one REPEATABLE READ snapshot, and only the
findings come back.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import AsyncConnection, IsolationLevel
from psycopg.rows import class_row

from ledger import db
from ledger.signatures import Webhooks

# Every event beside its predecessor in its stream (the event one version before). An event
# is a finding when its hash is not the link from that predecessor, when the predecessor is
# missing, when it sits at a higher position (the log's order was changed), when its stream
# has no head, or when it is a payment whose signature holds under none of the secrets
# (webhook_signature_holds, sql/0005).
#
# Written as joins rather than a window over sorted streams, so that PostgreSQL runs all of it
# in parallel workers (hash joins, no sort); the CTE is materialized so that the LIMIT does not
# talk the planner into a serial plan that hopes to stop early.
SELECT_FINDINGS = """
    WITH findings AS MATERIALIZED (
        SELECT e.position, e.stream, e.stream_version, p.stream_version AS previous_version,
               p.position AS previous_position, checked.link_holds, checked.signature_holds,
               h.stream IS NOT NULL AS has_head
        FROM audit_events AS e
        LEFT JOIN audit_events AS p ON p.stream = e.stream AND p.stream_version = e.stream_version - 1
        LEFT JOIN stream_heads AS h ON h.stream = e.stream
        CROSS JOIN LATERAL (
            SELECT e.hash = sha256(COALESCE(p.hash, '\\x'::bytea)
                                   || event_digest(e.type, e.stream, e.stream_version, e.data)) AS link_holds,
                   e.type <> 'PaymentReceived'
                   OR (e.data->>'transaction_id' IS NOT DISTINCT FROM e.transaction_id
                       AND webhook_signature_holds(e.data, %(secrets)s::bytea[], %(standard_keys)s::bytea[]))
                   AS signature_holds
        ) AS checked
        WHERE NOT checked.link_holds
           OR (e.stream_version > 1 AND p.position IS NULL)
           OR p.position > e.position
           OR NOT checked.signature_holds
           OR h.stream IS NULL
    )
    SELECT * FROM findings LIMIT %(limit)s
"""

# Each stream's head (stream_heads, kept by the appending transaction) beside the stream's
# last event, found through the (stream, stream_version) index: a removed last event leaves the
# head ahead, an added one leaves the chain ahead. (A stream without a head is found above.)
SELECT_HEAD_MISMATCHES = """
    SELECT h.stream, h.version AS head_version, t.version AS tail_version, t.position AS tail_position
    FROM stream_heads AS h
    LEFT JOIN LATERAL (
        SELECT e.stream_version AS version, e.hash, e.position
        FROM audit_events AS e
        WHERE e.stream = h.stream
        ORDER BY e.stream_version DESC
        LIMIT 1
    ) AS t ON true
    WHERE h.version IS DISTINCT FROM t.version OR h.hash IS DISTINCT FROM t.hash
    ORDER BY h.stream
    LIMIT %(limit)s
"""

SELECT_EVENTS_BEYOND_HEAD = """
    SELECT e.position, e.stream_version
    FROM audit_events AS e
    WHERE e.stream = %(stream)s
      AND e.stream_version > COALESCE((SELECT version FROM stream_heads WHERE stream = %(stream)s), 0)
    ORDER BY e.stream_version
"""


COUNT_EVENTS_AND_STREAMS = "SELECT (SELECT count(*) FROM audit_events), (SELECT count(*) FROM stream_heads)"

# A delivery key (delivery_key(), sql/0021: the signature, or the webhook-id) recorded under
# more than one transaction: a signed text cut into other fields, credited again. The database
# refuses that now; a log written before, or appended to by the owner, may still hold it.
# Double entry: each ledger transaction's postings sum to zero (the database refuses any other
# append, but the log may have been written around it), and so do all the balances.
SELECT_UNBALANCED = """
    SELECT position, NULL AS total FROM (
        SELECT position, sum(amount) AS total FROM log_postings GROUP BY position HAVING sum(amount) <> 0
        ORDER BY position LIMIT %(limit)s
    ) AS transactions
    UNION ALL
    SELECT NULL, total FROM (SELECT COALESCE(sum(amount), 0) AS total FROM log_postings) AS everything
    WHERE total <> 0
"""

SELECT_REUSED_DELIVERY_KEYS = """
    SELECT (array_agg(position ORDER BY position))[2] AS position,
           (array_agg(stream ORDER BY position))[2] AS stream,
           array_agg(transaction_id ORDER BY position) AS transaction_ids
    FROM audit_events
    WHERE type = 'PaymentReceived'
    GROUP BY delivery_key(data)
    HAVING count(*) > 1
    ORDER BY 1
    LIMIT %(limit)s
"""


@dataclass(frozen=True)
class Finding:
    kind: str  # altered, removed, inserted, reordered, bad_signature, reused_signature, unbalanced
    position: int | None  # the event named (for removed: the one after the gap, if any)
    stream: str
    detail: str

    def __str__(self) -> str:
        at = f"position {self.position}" if self.position is not None else "no position"
        return f"{self.kind}: {at} ({self.stream}): {self.detail}"


@dataclass(frozen=True)
class VerifyReport:
    events: int
    streams: int
    findings: list[Finding]

    @property
    def intact(self) -> bool:
        return not self.findings


@dataclass(frozen=True)
class _Link:
    position: int
    stream: str
    stream_version: int
    previous_version: int | None
    previous_position: int | None
    link_holds: bool
    signature_holds: bool
    has_head: bool


@dataclass(frozen=True)
class _HeadMismatch:
    stream: str
    head_version: int | None
    tail_version: int | None
    tail_position: int | None


async def verify(conn: AsyncConnection, webhooks: Webhooks, finding_limit: int = 1000) -> VerifyReport:
    """Check every chain, head and signature in one snapshot, and that no signature was spent
    twice; return what does not hold.

    conn must be outside any transaction.
    """
    await conn.set_isolation_level(IsolationLevel.REPEATABLE_READ)
    try:
        async with conn.transaction():
            cursor = await conn.execute(COUNT_EVENTS_AND_STREAMS)
            counts = await cursor.fetchone()
            assert counts is not None
            # Sorts of a million narrow rows stay in memory rather than spill to disk.
            await conn.execute(db.SET_BULK_WORK_MEM)
            findings = await _event_findings(conn, webhooks, finding_limit)
            findings += await _head_findings(conn, finding_limit)
            findings += await _reused_key_findings(conn, finding_limit)
            findings += await _unbalanced_findings(conn, finding_limit)
    finally:
        await conn.set_isolation_level(None)
    # An altered last event breaks both its link and the head: name it once.
    unique = list({(f.kind, f.position, f.stream): f for f in findings}.values())
    return VerifyReport(counts[0], counts[1], unique)


async def _event_findings(conn: AsyncConnection, webhooks: Webhooks, limit: int) -> list[Finding]:
    params = {
        "secrets": list(webhooks.secrets),
        "standard_keys": list(webhooks.standard_keys),
        "limit": limit,
    }
    async with conn.cursor(row_factory=class_row(_Link)) as cursor:
        await cursor.execute(SELECT_FINDINGS, params)
        links = await cursor.fetchall()
    findings = []
    for link in sorted(links, key=lambda link: (link.stream, link.stream_version, link.position)):
        if not link.signature_holds:
            findings.append(
                Finding(
                    "bad_signature",
                    link.position,
                    link.stream,
                    "the signature holds under none of the configured secrets",
                )
            )
        if not link.has_head:
            findings.append(
                Finding("inserted", link.position, link.stream, "a stream without a head: no append made it")
            )
            continue
        if link.stream_version > 1 and link.previous_version is None:
            findings.append(
                Finding(
                    "removed",
                    link.position,
                    link.stream,
                    f"version {link.stream_version - 1} missing before it",
                )
            )
        elif link.previous_position is not None and link.previous_position > link.position:
            findings.append(
                Finding(
                    "reordered",
                    link.position,
                    link.stream,
                    f"version {link.stream_version} sits before position {link.previous_position}, "
                    f"which holds version {link.previous_version}",
                )
            )
        elif not link.link_holds:
            findings.append(
                Finding(
                    "altered",
                    link.position,
                    link.stream,
                    f"version {link.stream_version}: its hash is not its content chained to its predecessor",
                )
            )
    return findings


async def _head_findings(conn: AsyncConnection, limit: int) -> list[Finding]:
    async with conn.cursor(row_factory=class_row(_HeadMismatch)) as cursor:
        await cursor.execute(SELECT_HEAD_MISMATCHES, {"limit": limit})
        mismatches = await cursor.fetchall()
    findings = []
    for mismatch in mismatches:
        head, tail = mismatch.head_version or 0, mismatch.tail_version or 0
        if head > tail:
            missing = f"{tail + 1}" if head == tail + 1 else f"{tail + 1}..{head}"
            findings.append(
                Finding(
                    "removed", None, mismatch.stream, f"version {missing} missing at the end (head is {head})"
                )
            )
        elif tail > head:
            beyond = await conn.execute(SELECT_EVENTS_BEYOND_HEAD, {"stream": mismatch.stream})
            for position, version in await beyond.fetchall():
                findings.append(
                    Finding(
                        "inserted",
                        position,
                        mismatch.stream,
                        f"version {version} is beyond the head ({head})",
                    )
                )
        else:
            findings.append(
                Finding(
                    "altered",
                    mismatch.tail_position,
                    mismatch.stream,
                    f"version {tail}: its hash is not the head's",
                )
            )
    return findings


async def _reused_key_findings(conn: AsyncConnection, limit: int) -> list[Finding]:
    cursor = await conn.execute(SELECT_REUSED_DELIVERY_KEYS, {"limit": limit})
    return [
        Finding(
            "reused_signature",
            position,
            stream,
            "one signature (or webhook-id) is recorded under transactions " + ", ".join(transaction_ids),
        )
        for position, stream, transaction_ids in await cursor.fetchall()
    ]


async def _unbalanced_findings(conn: AsyncConnection, limit: int) -> list[Finding]:
    cursor = await conn.execute(SELECT_UNBALANCED, {"limit": limit})
    return [
        Finding("unbalanced", position, "", "its postings do not sum to zero")
        if position is not None
        else Finding("unbalanced", None, "", f"every posting of the log sums to {total}, not 0.00")
        for position, total in await cursor.fetchall()
    ]
