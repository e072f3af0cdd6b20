"""A scenario's figures over its rounds: the rate, latency percentiles, errors, and the CPU that
each party spent per request (the server's processes, the load generator, the whole machine).

The scenarios take turns, round after round (bench.run), so that whatever else loads this
shared machine falls on each of them alike; a scenario's figures sum its rounds. The machine's
CPU per request and its idle share tell whether a run was bound by the CPU (idle near 0) and
where the CPU went: the database's share is the machine's less the server's and the generator's
when all three run here.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psutil


@dataclass
class MachineCpu:
    """The machine's CPU seconds, all cores together, over a measured block."""

    busy_s: float = 0.0
    idle_s: float = 0.0


def _busy_and_idle(times: Any) -> tuple[float, float]:
    idle = times.idle + getattr(times, "iowait", 0.0)
    busy = sum(getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq"))
    return busy, idle


@contextmanager
def machine_cpu() -> Iterator[MachineCpu]:
    """Measure the machine's busy and idle CPU seconds over the block."""
    measured = MachineCpu()
    busy_before, idle_before = _busy_and_idle(psutil.cpu_times())
    try:
        yield measured
    finally:
        busy_after, idle_after = _busy_and_idle(psutil.cpu_times())
        measured.busy_s = busy_after - busy_before
        measured.idle_s = idle_after - idle_before


@dataclass
class Slice:
    """One round of one scenario."""

    duration_s: float
    latencies_ms: list[float]
    errors: int
    machine: MachineCpu
    statuses: dict[int, int] | None = None  # HTTP scenarios
    server_cpu_s: float | None = None  # when a `ledger serve` answered
    generator_cpu_s: float | None = None  # when bench.load sent the requests

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


@dataclass
class Figures:
    """A scenario's slices, summed."""

    slices: list[Slice] = field(default_factory=list)

    def add(self, measured: Slice) -> None:
        self.slices.append(measured)

    @property
    def rps(self) -> float:
        duration_s = sum(s.duration_s for s in self.slices)
        return sum(s.requests for s in self.slices) / duration_s if duration_s else 0.0

    def summary(self) -> dict[str, Any]:
        slices = self.slices
        requests = sum(s.requests for s in slices)
        duration_s = sum(s.duration_s for s in slices)
        latencies = sorted(latency for s in slices for latency in s.latencies_ms)

        def percentile(fraction: float) -> float:
            return latencies[min(len(latencies) - 1, int(fraction * len(latencies)))] if latencies else 0.0

        per_request = 1000 / max(1, requests)  # seconds in all -> ms per request
        busy_s = sum(s.machine.busy_s for s in slices)
        idle_s = sum(s.machine.idle_s for s in slices)
        summary: dict[str, Any] = {
            "rps": round(self.rps, 1),
            "p50_ms": round(percentile(0.50), 2),
            "p99_ms": round(percentile(0.99), 2),
            "requests": requests,
            "errors": sum(s.errors for s in slices),
            "rounds": len(slices),
            "rps_per_round": [round(s.rps, 1) for s in slices],
            "machine_cpu_ms_per_request": round(busy_s * per_request, 3),
            "machine_idle_share": round(idle_s / (busy_s + idle_s), 3) if busy_s + idle_s else None,
        }
        if all(s.statuses is not None for s in slices):
            statuses: dict[int, int] = {}
            for s in slices:
                for status, count in (s.statuses or {}).items():
                    statuses[status] = statuses.get(status, 0) + count
            summary["statuses"] = {str(status): count for status, count in sorted(statuses.items())}
        if all(s.server_cpu_s is not None for s in slices):
            # What the service's code costs per request, whatever else shares the machine.
            server_cpu_s = sum(s.server_cpu_s or 0.0 for s in slices)
            summary["server_cpu_ms_per_request"] = round(server_cpu_s * per_request, 3)
        if all(s.generator_cpu_s is not None for s in slices):
            generator_cpu_s = sum(s.generator_cpu_s or 0.0 for s in slices)
            summary["generator_cpu_share"] = round(generator_cpu_s / duration_s, 3) if duration_s else None
            summary["generator_cpu_ms_per_request"] = round(generator_cpu_s * per_request, 3)
        return summary


def ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator else None


def ratios_per_round(numerator: Figures, denominator: Figures) -> list[float | None]:
    """Return each round's ratio of the two scenarios' rates (they ran side by side)."""
    return [ratio(n.rps, d.rps) for n, d in zip(numerator.slices, denominator.slices, strict=True)]


def median_or_none(values: list[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return round(statistics.median(known), 3) if known else None


def markdown_table(rows: list[tuple[str, ...]]) -> list[str]:
    """Return the lines of a Markdown table whose first row is the header, columns padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]
    lines.insert(1, "| " + " | ".join("-" * width for width in widths) + " |")
    return lines
