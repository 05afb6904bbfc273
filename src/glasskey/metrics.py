"""Prometheus metrics of one gateway process, in a registry of its own (no global state).

Per route: attempts by outcome, errors by class, latency and time-to-first-token histograms,
and the breaker state (read from the health board at scrape time). Per wallet: charges.
Per endpoint: requests by status and error source.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from glasskey.routing.health import CLOSED, HALF_OPEN, OPEN, HealthBoard

LATENCY_BUCKETS_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
BREAKER_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}
M = TypeVar("M", Counter, Histogram)


class _Children(Generic[M]):
    """A labelled metric's children by label values, looked up once each.

    ``labels()`` checks its arguments, converts them and takes a lock on every call, and the
    request path calls it several times per request; a child, once made, never changes. The
    registry keeps every child forever anyway, so this map grows no further than it does.
    """

    def __init__(self, metric: M) -> None:
        self.metric: M = metric
        self._children: dict[tuple[str, ...], M] = {}

    def __call__(self, *values: str) -> M:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.metric.labels(*values)
        return child


class _BreakerCollector(Collector):
    def __init__(self, board: HealthBoard) -> None:
        self.board = board

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "glasskey_route_breaker_state", "Breaker of each route: 0 closed, 1 half-open, 2 open", labels=["route"]
        )
        for route_id in self.board.route_ids():
            gauge.add_metric([route_id], BREAKER_VALUES[self.board.state(route_id)])
        yield gauge


class WriterCounts(Protocol):
    """What the group-commit writer counts (``store.writer``), read at scrape time."""

    batches: int
    jobs: int
    isolated_batches: int
    isolated_failures: int


class _WriterCollector(Collector):
    def __init__(self, writer: WriterCounts) -> None:
        self.writer = writer

    def collect(self) -> Iterator[CounterMetricFamily]:
        writer = self.writer
        yield CounterMetricFamily("glasskey_writer_batches", "Group commits run", value=writer.batches)
        yield CounterMetricFamily("glasskey_writer_writes", "Writes run in group commits", value=writer.jobs)
        yield CounterMetricFamily(
            "glasskey_writer_isolated_batches",
            "Group commits that failed and were retried write by write, so only the guilty write failed",
            value=writer.isolated_batches,
        )
        yield CounterMetricFamily(
            "glasskey_writer_isolated_failures",
            "Writes that failed alone after their group commit failed",
            value=writer.isolated_failures,
        )


class Metrics:
    def __init__(self, board: HealthBoard) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.attempts = Counter(
            "glasskey_route_attempts",
            "Upstream attempts per route",
            ["route", "provider", "outcome"],
            registry=self.registry,
        )
        self.errors = Counter(
            "glasskey_route_errors",
            "Failed attempts per route and error class",
            ["route", "error_class"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "glasskey_route_latency_seconds",
            "Attempt latency per route",
            ["route"],
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=self.registry,
        )
        self.ttft = Histogram(
            "glasskey_route_ttft_seconds",
            "Time to first token of streams per route",
            ["route"],
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=self.registry,
        )
        self.requests = Counter(
            "glasskey_requests",
            "Gateway requests by endpoint, status and error source",
            ["endpoint", "status", "source"],
            registry=self.registry,
        )
        self.charges = Counter(
            "glasskey_wallet_charges_micros",
            "Posted charges per wallet, in micro-dollars",
            ["org", "wallet"],
            registry=self.registry,
        )
        self.registry.register(_BreakerCollector(board))
        self._attempts = _Children(self.attempts)
        self._errors = _Children(self.errors)
        self._latency = _Children(self.latency)
        self._ttft = _Children(self.ttft)
        self._requests = _Children(self.requests)
        self._charges = _Children(self.charges)

    def watch_writer(self, writer: WriterCounts) -> None:
        self.registry.register(_WriterCollector(writer))

    def attempt(
        self, route_id: str, provider: str, *, ok: bool, latency_ms: int, error_class: str | None = None
    ) -> None:
        self._attempts(route_id, provider, "succeeded" if ok else "failed").inc()
        if not ok:
            self._errors(route_id, error_class or "unknown").inc()
        self._latency(route_id).observe(latency_ms / 1000)

    def first_token(self, route_id: str, ttft_ms: int) -> None:
        self._ttft(route_id).observe(ttft_ms / 1000)

    def request(self, endpoint: str, http_status: int, source: str | None) -> None:
        self._requests(endpoint, str(http_status), source or "").inc()

    def charge(self, org_id: str, wallet_kind: str, micros: int) -> None:
        if micros > 0:
            self._charges(org_id, wallet_kind).inc(micros)

    def render(self) -> bytes:
        return generate_latest(self.registry)
