"""Watching the service: a request id, one JSON log line and Prometheus metrics per request.

Metrics live in a registry of the app's own (no global state), served at /metrics. Each
process has its own: with `ledger serve --workers N` every worker counts only the requests it
served, and a scrape reaches one of them (see the README, Operations). Labels take bounded
values only: the route template, never the raw path; a known method or "other".
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Iterator
from typing import Any

from falcon.asgi import Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from psycopg_pool import AsyncConnectionPool

from ledger.logs import REQUEST_ID

access_log = logging.getLogger("ledger.access")

# A request id given by the client is kept when it is short and plain; otherwise a new one.
REQUEST_ID_HEADER = "X-Request-ID"
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
WEBHOOK_ROUTE = "/webhook/payment"
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The app's metrics and the registry that serves them."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "ledger_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ledger_http_request_duration_seconds",
            "Time from the request's arrival in the app to its answer, by method and route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "ledger_http_requests_in_flight", "Requests being served now.", registry=self.registry
        )
        self.webhook_outcomes = Counter(
            "ledger_webhook_deliveries",
            "Payment deliveries by outcome: credited, already_processed, conflict, invalid_signature, "
            "refused (any other 4xx), error (5xx).",
            ["outcome"],
            registry=self.registry,
        )
        self.registry.register(PoolCollector(pool))


class PoolCollector(Collector):
    """The pool's own figures (psycopg_pool's get_stats()), read at each scrape."""

    GAUGES = {
        "pool_size": "Connections open or being opened.",
        "pool_available": "Idle connections ready to be handed out.",
        "requests_waiting": "Requests waiting for a connection.",
        "pool_max": "The most connections the pool opens.",
    }
    COUNTERS = {
        "requests_num": "Connections asked of the pool.",
        "requests_queued": "Requests that had to wait for a connection.",
        "requests_errors": "Requests that got no connection (timeout).",
        "connections_errors": "Failed attempts to open a connection.",
        "connections_lost": "Connections found broken and replaced.",
        "returns_bad": "Connections returned broken.",
    }

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    def collect(self) -> Iterator[Metric]:
        stats = self._pool.get_stats()  # counters absent from the dict are 0
        for key, text in self.GAUGES.items():
            yield GaugeMetricFamily(f"ledger_pool_{key}", text, value=stats.get(key, 0))
        for key, text in self.COUNTERS.items():
            yield CounterMetricFamily(f"ledger_pool_{key}", text, value=stats.get(key, 0))


class Telemetry:
    """Falcon middleware: put a request id on the request, the log and the answer; log one JSON
    line per request; count it in the metrics. Nothing here touches the database."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        # The labelled series of each (method, route, status) seen, so that a request costs no
        # labels() lookup under prometheus-client's lock. Bounded: known methods, the app's
        # routes and HTTP statuses.
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._outcome_series: dict[str, Any] = {}  # the same for each webhook outcome

    async def process_request(self, req: Request, resp: Response) -> None:
        req.context.started_at = time.perf_counter()
        request_id = req.get_header(REQUEST_ID_HEADER)
        if request_id is None or not SANE_REQUEST_ID.fullmatch(request_id):
            request_id = secrets.token_hex(16)  # none given, or not a plain one
        req.context.request_id = request_id
        REQUEST_ID.set(request_id)
        self._metrics.in_flight.inc()

    async def process_response(
        self, req: Request, resp: Response, resource: Any, req_succeeded: bool
    ) -> None:
        started_at = getattr(req.context, "started_at", None)
        if started_at is None:  # process_request did not run: nothing to close
            return
        duration_s = time.perf_counter() - started_at
        method = req.method if req.method in METHODS else "other"
        route = req.uri_template or "unmatched"
        status = resp.status_code
        resp.set_header(REQUEST_ID_HEADER, req.context.request_id)

        metrics = self._metrics
        metrics.in_flight.dec()
        series = self._series.get((method, route, status))
        if series is None:
            series = (
                metrics.requests.labels(method, route, str(status)),
                metrics.latency.labels(method, route),
            )
            self._series[(method, route, status)] = series
        requests, latency = series
        requests.inc()
        latency.observe(duration_s)
        if route == WEBHOOK_ROUTE and method == "POST":
            outcome = _webhook_outcome(status, resp.media)
            outcome_series = self._outcome_series.get(outcome)
            if outcome_series is None:
                outcome_series = self._outcome_series[outcome] = metrics.webhook_outcomes.labels(outcome)
            outcome_series.inc()
        fields = {
            "request_id": req.context.request_id,
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": round(duration_s * 1000, 2),
        }
        access_log.info("%s %s %s", method, route, status, extra=fields)


def _webhook_outcome(status: int, body: object) -> str:
    if status == 201:
        return "credited"
    if status == 200:
        return "already_processed"
    if status >= 500:
        return "error"
    error = body.get("error") if isinstance(body, dict) else None
    if error == "transaction_conflict":
        return "conflict"
    if error == "invalid_signature":
        return "invalid_signature"
    return "refused"


class MetricsEndpoint:
    """GET /metrics: this process's metrics in Prometheus's text format."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def on_get(self, req: Request, resp: Response) -> None:
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = generate_latest(self._metrics.registry)
