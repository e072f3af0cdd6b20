"""The failover drill: lose the primary under load, and check that no acknowledged payment is lost.

A pg_auto_failover formation (monitor, primary, synchronous standby) on loopback ports;
`ledger serve` on it through a URL that lists both nodes; senders that retry each delivery
(the same body) until it is answered 200 or 201; the primary's machine killed outright
(postmaster and keeper, SIGKILL) halfway through; then, on the new primary: is every delivery
credited exactly once, is every acknowledged one there, do the sums match, does a replay equal
the projections, is the log intact.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import secrets
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench import clusters, seed, server
from bench.seed import Population
from ledger import db, signatures
from ledger.config import REPO_ROOT

DELIVERIES = 1000
SENDERS = 16
ACKNOWLEDGED = frozenset({200, 201})
RETRY_DELAY_S = 0.2  # when an answer names no Retry-After (a connection that failed)
SEND_TIMEOUT_S = 15.0
GIVE_UP_AFTER_S = 120.0  # a delivery still unacknowledged then counts as not credited
CONNECTION_FAILED = "connection_failed"
JSON = {"Content-Type": "application/json"}
TARGET_UNAVAILABLE_S = 15.0

SELECT_CREDITS = """
    SELECT data->>'transaction_id', count(*) FROM events
    WHERE type = 'PaymentReceived' AND data->>'transaction_id' LIKE %(prefix)s
    GROUP BY 1
"""


@dataclass
class Delivery:
    transaction_id: str
    cents: int
    body: bytes
    statuses: list[int | str] = field(default_factory=list)
    acknowledged: bool = False


def _deliveries(count: int, population: Population, secret: bytes, prefix: str) -> list[Delivery]:
    made = []
    for number in range(1, count + 1):
        user_id = random.randint(population.first_user, population.last_user)
        account_id = random.choice(population.account_ids(user_id))
        cents = random.randint(1, 100_000)
        amount = f"{cents // 100}.{cents % 100:02d}"
        transaction_id = f"{prefix}{number}"
        signature = signatures.sign(
            signatures.payload(str(account_id), amount, transaction_id, str(user_id)), secret
        )
        body = (
            f'{{"transaction_id":"{transaction_id}","user_id":{user_id},"account_id":{account_id},'
            f'"amount":{amount},"signature":"{signature}"}}'
        ).encode()
        made.append(Delivery(transaction_id, cents, body))
    return made


class Senders:
    """Senders that each take the next delivery and retry it until it is acknowledged, as a
    payment provider does; every answer is kept with its time."""

    def __init__(self, base_url: str, deliveries: list[Delivery], halfway: int) -> None:
        self._url = base_url + "/webhook/payment"
        self._waiting = collections.deque(deliveries)
        self._halfway = halfway
        self.halfway_reached = asyncio.Event()  # set once `halfway` deliveries are acknowledged
        self.acknowledged_at: list[float] = []
        self.statuses: collections.Counter[int | str] = collections.Counter()

    async def run(self, senders: int) -> None:
        limits = httpx.Limits(max_connections=senders, max_keepalive_connections=senders)
        async with httpx.AsyncClient(timeout=SEND_TIMEOUT_S, limits=limits) as client:
            await asyncio.gather(*(self._send(client) for _ in range(senders)))

    async def _send(self, client: httpx.AsyncClient) -> None:
        while self._waiting:
            delivery = self._waiting.popleft()
            given_up_at = time.monotonic() + GIVE_UP_AFTER_S
            while time.monotonic() < given_up_at:
                status, delay_s = await self._post(client, delivery.body)
                delivery.statuses.append(status)
                self.statuses[status] += 1
                if status in ACKNOWLEDGED:
                    delivery.acknowledged = True
                    self.acknowledged_at.append(time.monotonic())
                    if len(self.acknowledged_at) >= self._halfway:
                        self.halfway_reached.set()
                    break
                if isinstance(status, int) and status < 500:
                    break  # a refusal: sending it again would be refused again
                await asyncio.sleep(delay_s)

    async def _post(self, client: httpx.AsyncClient, body: bytes) -> tuple[int | str, float]:
        try:
            response = await client.post(self._url, content=body, headers=JSON)
        except httpx.TransportError:
            return CONNECTION_FAILED, RETRY_DELAY_S
        retry_after = response.headers.get("Retry-After", "")
        return response.status_code, float(retry_after) if retry_after.isdigit() else RETRY_DELAY_S


def longest_gap_s(times: list[float], start: float, end: float) -> float:
    """The longest stretch between start and end with no acknowledgement in it."""
    marks = [start, *sorted(times), end]
    return max(later - earlier for earlier, later in zip(marks, marks[1:], strict=False))


async def _drive(formation: clusters.Formation, senders: Senders, concurrency: int) -> dict[str, Any]:
    """Send every delivery; lose the primary once half of them are acknowledged."""
    failover: dict[str, Any] = {}

    async def lose_the_primary() -> None:
        await senders.halfway_reached.wait()
        lost = await asyncio.to_thread(formation.primary)
        survivor = next(node for node in formation.nodes if node is not lost)
        failover["lost_node"] = lost.name
        failover["killed_at"] = time.monotonic()
        await asyncio.to_thread(formation.lose, lost)
        promoted_in_s = await asyncio.to_thread(formation.wait_for, {survivor.name: "wait_primary"})
        failover["promotion_s"] = round(promoted_in_s, 2)
        failover["new_primary"] = survivor.name

    killer = asyncio.create_task(lose_the_primary())
    await senders.run(concurrency)
    await killer
    return failover


def _ledger(database_url: str, webhook_secret: bytes, *arguments: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")} | {
        "LEDGER_DATABASE_URL": database_url,
        "LEDGER_WEBHOOK_SECRETS": webhook_secret.decode(),
    }
    return subprocess.run(
        [sys.executable, "-m", "ledger", *arguments], env=env, capture_output=True, text=True, timeout=300
    )


def _check(
    database_url: str, deliveries: list[Delivery], prefix: str, webhook_secret: bytes
) -> dict[str, Any]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(SELECT_CREDITS, {"prefix": prefix + "%"}).fetchall()
    credits: dict[str, int] = {transaction_id: count for transaction_id, count in rows}
    credited_cents = sum(d.cents for d in deliveries if credits.get(d.transaction_id))
    balances, paid_in_log, _ = seed.totals(database_url)
    replayed = _ledger(database_url, webhook_secret, "replay")
    verified = _ledger(database_url, webhook_secret, "verify")
    return {
        "credited_once": sum(credits.get(d.transaction_id) == 1 for d in deliveries),
        "lost": sum(d.acknowledged and not credits.get(d.transaction_id) for d in deliveries),
        "double": sum(credits.get(d.transaction_id, 0) > 1 for d in deliveries),
        "sums_match": balances == paid_in_log == Decimal(credited_cents) / 100,
        "replay_equal": replayed.returncode == 0,
        "verify_intact": verified.returncode == 0,
        "replay_output": _last_lines(replayed),
        "verify_output": _last_lines(verified),
    }


def _last_lines(finished: subprocess.CompletedProcess[str]) -> list[str]:
    return finished.stdout.strip().splitlines()[-1:] + finished.stderr.strip().splitlines()[-3:]


def drill(deliveries: int, concurrency: int, workers: int, log_dir: Path) -> dict[str, Any]:
    """Run the drill; return its report (see the module's docstring)."""
    missing = clusters.missing_binaries()
    if missing:
        packages = " ".join(missing)
        raise clusters.ClusterError(f"the drill needs Debian's {packages}: apt-get install {packages}")
    population = Population(users=100, accounts_per_user=2)
    webhook_secret = secrets.token_hex(16).encode()
    prefix = f"drill-{uuid.uuid4().hex[:8]}-"
    started = time.monotonic()
    with clusters.formation() as formation:
        formed_s = time.monotonic() - started
        primary_port = formation.primary().port
        with psycopg.connect(
            f"postgresql://postgres@{clusters.HOST}:{primary_port}/postgres", autocommit=True
        ) as conn:
            conn.execute("CREATE DATABASE ledger")
        database_url = formation.database_url("ledger")
        db.migrate(database_url, REPO_ROOT / "sql")
        seed.seed(database_url, population, 0, webhook_secret)
        port = server.free_port()
        jwt_secret = secrets.token_hex(32).encode()
        with server.ledger_serve(
            database_url, port, workers, jwt_secret, webhook_secret, log_dir / "ledger.log"
        ):
            made = _deliveries(deliveries, population, webhook_secret, prefix)
            senders = Senders(f"http://{clusters.HOST}:{port}", made, halfway=deliveries // 2)
            sending_started = time.monotonic()
            failover = asyncio.run(_drive(formation, senders, concurrency))
            sending_ended = time.monotonic()
        checks = _check(database_url, made, prefix, webhook_secret)
    acknowledged = sum(d.acknowledged for d in made)
    report = {
        "deliveries": deliveries,
        "acknowledged": acknowledged,
        **{name: checks[name] for name in ("credited_once", "lost", "double")},
        "unavailable_s": round(longest_gap_s(senders.acknowledged_at, sending_started, sending_ended), 2),
        "statuses": {str(status): count for status, count in sorted(senders.statuses.items(), key=str)},
        **{name: checks[name] for name in ("sums_match", "replay_equal", "verify_intact")},
        "promotion_s": failover.get("promotion_s"),
        "lost_node": failover.get("lost_node"),
        "new_primary": failover.get("new_primary"),
        "formation_s": round(formed_s, 1),
        "sending_s": round(sending_ended - sending_started, 1),
        "concurrency": concurrency,
        "workers": workers,
    }
    report["targets_met"] = (
        report["lost"] == 0
        and report["double"] == 0
        and report["credited_once"] == deliveries
        and report["unavailable_s"] < TARGET_UNAVAILABLE_S
        and "500" not in report["statuses"]
        and checks["sums_match"]
        and checks["replay_equal"]
        and checks["verify_intact"]
    )
    if not (checks["replay_equal"] and checks["verify_intact"]):
        report["audit_output"] = {"replay": checks["replay_output"], "verify": checks["verify_output"]}
    return report
