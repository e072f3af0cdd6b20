"""Operations: /healthz, /readyz, request ids, one JSON log line per request, /metrics."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from falcon.testing import ASGIConductor
from prometheus_client.parser import text_string_to_metric_families
from psycopg_pool import AsyncConnectionPool

from ledger import db
from ledger.config import REPO_ROOT, Settings
from ledger.http.app import create_app
from ledger.logs import JsonFormatter
from tests.support import Person, delivery_body, new_account_id


@pytest.fixture
async def fresh_app_client(settings: Settings, pool: AsyncConnectionPool) -> AsyncIterator[ASGIConductor]:
    """A client of an app of its own, so its metrics count this test's requests only."""
    async with ASGIConductor(create_app(settings, pool, pool_lifespan=False)) as conductor:
        yield conductor


class Lines(logging.Handler):
    """Formats each record as the service's log handler does, when it is emitted."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def access_lines() -> Iterator[list[dict]]:
    handler = Lines()
    logger = logging.getLogger("ledger.access")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a Prometheus text page, by (name, labels)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_healthz_and_readyz_answer_on_a_migrated_database(client: ASGIConductor) -> None:
    assert (await client.simulate_get("/healthz")).json == {"status": "ok"}
    ready = await client.simulate_get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json == {"status": "ready"}


async def test_readyz_is_503_while_a_migration_is_pending(
    settings: Settings, pool: AsyncConnectionPool, tmp_path: Path
) -> None:
    migrations = tmp_path / "sql"
    shutil.copytree(REPO_ROOT / "sql", migrations)
    (migrations / "9999.add-something.sql").write_text("SELECT 1;\n")
    app = create_app(dataclasses.replace(settings, migrations_dir=migrations), pool, pool_lifespan=False)
    async with ASGIConductor(app) as client:
        result = await client.simulate_get("/readyz")
    assert result.status_code == 503
    assert result.json["error"] == "migrations_pending"
    assert "1 migration" in result.json["message"]


async def test_readyz_is_503_on_a_database_never_migrated(settings: Settings, server_url: str) -> None:
    url = db.create_database(server_url, "ledger_unmigrated")
    try:
        pool = AsyncConnectionPool(url, min_size=1, max_size=2, open=False)
        async with pool, ASGIConductor(create_app(settings, pool, pool_lifespan=False)) as client:
            result = await client.simulate_get("/readyz")
        assert result.status_code == 503
        assert result.json["error"] == "migrations_pending"
        assert db.pending_migrations(url, REPO_ROOT / "sql")  # indeed
    finally:
        db.drop_database(server_url, url)


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("abc-123_DEF.4:5", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("has space", False),
        ("-leading-dash", False),
        ('quote"inside', False),
        ("", False),
    ],
)
async def test_a_sane_request_id_is_echoed_any_other_is_replaced(
    client: ASGIConductor, given: str, kept: bool
) -> None:
    result = await client.simulate_get("/healthz", headers={"X-Request-ID": given})
    echoed = result.headers["X-Request-ID"]
    if kept:
        assert echoed == given
    else:
        assert echoed != given
        assert len(echoed) == 32 and int(echoed, 16) >= 0


async def test_each_request_gets_its_own_generated_id_even_an_error(client: ASGIConductor) -> None:
    ids = {
        (await client.simulate_get(path)).headers["X-Request-ID"]
        for path in ("/healthz", "/healthz", "/nowhere")
    }
    assert len(ids) == 3


async def test_one_json_log_line_per_request_with_the_route_template(
    client: ASGIConductor, admin: Person, access_lines: list[dict]
) -> None:
    result = await client.simulate_put(
        "/users/update/987654321",
        json={"full_name": "Nobody"},
        headers={**admin.headers, "X-Request-ID": "req-1"},
    )
    assert result.status_code == 404
    health = await client.simulate_get("/healthz")
    first, second = access_lines
    assert first["request_id"] == "req-1"
    assert first["method"] == "PUT"
    assert first["route"] == "/users/update/{user_id}"  # never the raw path with its id
    assert first["status"] == 404
    assert isinstance(first["duration_ms"], float) and first["duration_ms"] >= 0
    assert first["level"] == "info" and first["logger"] == "ledger.access"
    assert first["message"] == "PUT /users/update/{user_id} 404"
    assert second["route"] == "/healthz" and second["status"] == 200
    assert second["request_id"] == health.headers["X-Request-ID"]
    assert "987654321" not in json.dumps(access_lines)


async def test_metrics_count_requests_latency_webhook_outcomes_and_the_pool(
    fresh_app_client: ASGIConductor, person: Person
) -> None:
    client = fresh_app_client
    account_id = new_account_id()
    credited = delivery_body(person.user.id, account_id, "10.00")
    outcomes = [
        (credited, 201),  # credited
        (credited, 200),  # already processed
        ({**delivery_body(person.user.id, account_id, "11.00", credited["transaction_id"])}, 409),  # conflict
        ({**credited, "signature": "0" * 64}, 400),  # invalid signature
        (delivery_body(person.user.id, account_id, "0.001"), 422),  # refused (invalid amount)
        (delivery_body(987_654_321, new_account_id(), "1.00"), 404),  # refused (no such user)
    ]
    for body, status in outcomes:
        result = await client.simulate_post("/webhook/payment", json=body)
        assert result.status_code == status, result.text
    other = await client.simulate_get("/users/update/1")  # a route with a parameter, no token

    page = await client.simulate_get("/metrics")
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/plain")
    found = samples(page.text)

    def value(name: str, **labels: str) -> float:
        return found.get((name, frozenset(labels.items())), 0.0)

    for outcome, count in [
        ("credited", 1),
        ("already_processed", 1),
        ("conflict", 1),
        ("invalid_signature", 1),
        ("refused", 2),
        ("error", 0),
    ]:
        assert value("ledger_webhook_deliveries_total", outcome=outcome) == count, outcome
    webhook = {"method": "POST", "route": "/webhook/payment"}
    assert value("ledger_http_requests_total", **webhook, status="201") == 1
    assert value("ledger_http_requests_total", **webhook, status="404") == 1
    other_labels = {"method": "GET", "route": "/users/update/{user_id}", "status": str(other.status_code)}
    assert value("ledger_http_requests_total", **other_labels) == 1
    assert value("ledger_http_request_duration_seconds_count", **webhook) == len(outcomes)
    assert value("ledger_http_request_duration_seconds_bucket", **webhook, le="+Inf") == len(outcomes)
    assert value("ledger_http_requests_in_flight") == 1  # this scrape
    assert value("ledger_pool_pool_max") == 25  # the test pool's
    assert value("ledger_pool_pool_size") >= 1
    assert value("ledger_pool_requests_num_total") >= 1
