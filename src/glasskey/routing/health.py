"""Route health: passive statistics from real traffic, and a circuit breaker per route.

Each attempt on a route is recorded with its outcome, error class, latency and time to first
token, in a sliding window. The breaker of a route:

* ``closed``: traffic flows. It opens after ``consecutive_failures`` failures in a row, or when
  the failure rate in the window passes ``failure_rate`` over at least ``minimum_requests``.
* ``open``: the route is skipped for ``cooldown_seconds``; then it half-opens.
* ``half_open``: up to ``half_open_probes`` requests are let through at once. As many successes
  close it; one failure opens it again for another cooldown.

An operator may force a breaker ``open`` or ``closed``; the force holds until it is lifted. The
force is stored on the route, and every selection hands the board the route it read, which may
come from the read cache and so be up to a cache lifetime old. A route that disagrees with a
force change the board applied less than ``force_settle_seconds`` ago is such a stale copy and is
ignored: before, a copy cached before a lift re-applied the old force, and the fresh copy then
lifted it again, resetting the consecutive failures each time (eight failures after a lift left
the breaker closed with three). When every cached route was just dropped (a change announced
through Redis), no stale copy is left and ``forget_force_changes`` ends the wait.

A single error never disables a route for good. The last failure is kept beyond the window (its
class and how long ago), so a quiet route that failed a minute ago does not look untouched. The
board lives in one process (``routing.shared_health`` shares breakers through Redis): its clock is
injected so tests drive it (``time.monotonic`` in production).
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from glasskey.providers.base import ProviderError

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(frozen=True)
class BreakerPolicy:
    window_seconds: float = 60.0
    consecutive_failures: int = 5
    failure_rate: float = 0.5
    minimum_requests: int = 20
    cooldown_seconds: float = 30.0
    half_open_probes: int = 3
    window_max_samples: int = 10_000  # a bound on memory per route, whatever the traffic


@dataclass(frozen=True)
class Sample:
    at: float
    ok: bool
    error_class: str | None
    latency_ms: int
    ttft_ms: int | None


def percentile(sorted_values: list[int], share: float) -> int | None:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, -(-int(share * 1000) * len(sorted_values) // 1000))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class RouteHealth:
    policy: BreakerPolicy
    samples: deque[Sample] = field(default_factory=deque)
    state: str = CLOSED
    consecutive_failures: int = 0
    opened_at: float = 0.0
    probes_in_flight: int = 0
    probe_successes: int = 0
    forced: str | None = None
    last_failure: Sample | None = None

    def _trim(self, now: float) -> None:
        horizon = now - self.policy.window_seconds
        while self.samples and (self.samples[0].at < horizon or len(self.samples) > self.policy.window_max_samples):
            self.samples.popleft()

    def current_state(self, now: float) -> str:
        if self.forced is not None:
            return self.forced
        if self.state == OPEN and now - self.opened_at >= self.policy.cooldown_seconds:
            self.state = HALF_OPEN
            self.probes_in_flight = 0
            self.probe_successes = 0
        return self.state

    def try_acquire(self, now: float) -> bool:
        """Whether a request may use the route now (a half-open route counts its probe)."""
        state = self.current_state(now)
        if state == CLOSED:
            return True
        if state == HALF_OPEN and self.forced is None and self.probes_in_flight < self.policy.half_open_probes:
            self.probes_in_flight += 1
            return True
        return False

    def _open(self, now: float) -> None:
        self.state = OPEN
        self.opened_at = now
        self.probes_in_flight = 0
        self.probe_successes = 0

    def record(self, sample: Sample) -> None:
        now = sample.at
        self.samples.append(sample)
        self._trim(now)
        was_half_open = self.current_state(now) == HALF_OPEN and self.forced is None
        if was_half_open:
            self.probes_in_flight = max(0, self.probes_in_flight - 1)
        if not sample.ok:
            self.last_failure = sample
        if sample.ok:
            self.consecutive_failures = 0
            if was_half_open:
                self.probe_successes += 1
                if self.probe_successes >= self.policy.half_open_probes:
                    self.state = CLOSED
                    # A route that just recovered starts from a clean window.
                    self.samples.clear()
            return
        self.consecutive_failures += 1
        if was_half_open:
            self._open(now)
            return
        if self.state != CLOSED:
            return
        failures = sum(1 for s in self.samples if not s.ok)
        rate_tripped = (
            len(self.samples) >= self.policy.minimum_requests
            and failures / len(self.samples) >= self.policy.failure_rate
        )
        if self.consecutive_failures >= self.policy.consecutive_failures or rate_tripped:
            self._open(now)

    def release_probe(self, now: float) -> None:
        """A probe that ended without an outcome (the client left) frees its slot."""
        if self.current_state(now) == HALF_OPEN:
            self.probes_in_flight = max(0, self.probes_in_flight - 1)

    def snapshot(self, now: float) -> dict[str, Any]:
        self._trim(now)
        samples = list(self.samples)
        ok = sum(1 for s in samples if s.ok)
        latencies = sorted(s.latency_ms for s in samples)
        ttfts = sorted(s.ttft_ms for s in samples if s.ttft_ms is not None)
        state = self.current_state(now)
        return {
            "circuit": state,
            "forced": self.forced,
            "requests": len(samples),
            "successes": ok,
            "success_rate": round(ok / len(samples), 4) if samples else None,
            "errors_by_class": dict(Counter(s.error_class or "unknown" for s in samples if not s.ok)),
            "consecutive_failures": self.consecutive_failures,
            "latency_ms": {p: percentile(latencies, q) for p, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))},
            "ttft_ms": {p: percentile(ttfts, q) for p, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))},
            "reopens_in_seconds": max(0.0, round(self.opened_at + self.policy.cooldown_seconds - now, 3))
            if state == OPEN and self.forced is None
            else None,
            "last_failure": None
            if self.last_failure is None
            else {
                "error_class": self.last_failure.error_class or "unknown",
                "seconds_ago": round(max(0.0, now - self.last_failure.at), 1),
            },
        }


class HealthBoard:
    """The health of every route seen by this process."""

    def __init__(
        self, clock: Callable[[], float], policy: BreakerPolicy | None = None, *, force_settle_seconds: float = 2.0
    ) -> None:
        self.clock = clock
        self.policy = policy or BreakerPolicy()
        # Longer than the read cache's lifetime (1 s by default): no cached route outlives it.
        self.force_settle_seconds = force_settle_seconds
        self._routes: dict[str, RouteHealth] = {}
        self._force_changed_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def _route(self, route_id: str) -> RouteHealth:
        health = self._routes.get(route_id)
        if health is None:
            health = self._routes[route_id] = RouteHealth(self.policy)
        return health

    def state(self, route_id: str) -> str:
        with self._lock:
            return self._route(route_id).current_state(self.clock())

    def try_acquire(self, route_id: str) -> bool:
        with self._lock:
            return self._route(route_id).try_acquire(self.clock())

    def release_probe(self, route_id: str) -> None:
        with self._lock:
            self._route(route_id).release_probe(self.clock())

    def record(
        self, route_id: str, *, ok: bool, latency_ms: int, error_class: str | None = None, ttft_ms: int | None = None
    ) -> None:
        with self._lock:
            sample = Sample(self.clock(), ok, error_class, latency_ms, ttft_ms)
            self._route(route_id).record(sample)

    def force(self, route_id: str, state: str | None) -> None:
        """Force the breaker ``open`` or ``closed``; ``None`` lifts the force (and starts closed)."""
        if state not in (None, OPEN, CLOSED):
            raise ValueError("a breaker can be forced open or closed")
        with self._lock:
            self._apply_force(route_id, state)

    def _apply_force(self, route_id: str, state: str | None) -> bool:
        """Set the force (the lock held); whether a force was lifted."""
        health = self._route(route_id)
        if health.forced == state:
            return False
        lifted = health.forced is not None and state is None
        health.forced = state
        self._force_changed_at[route_id] = self.clock()
        if lifted:
            health.state, health.consecutive_failures = CLOSED, 0
        return lifted

    def forget_force_changes(self) -> None:
        """Every cached route was just dropped (an announced change): no stale copy is left, so the
        next route read applies its force at once, without waiting out the settle time."""
        with self._lock:
            self._force_changed_at.clear()

    def sync_forced(self, route_id: str, state: str | None) -> None:
        """Apply the force stored on the route, if it changed (routes carry it for every process).

        A route that disagrees with a change applied less than ``force_settle_seconds`` ago was read
        before that change (a cached copy): it is ignored, so a force or a lift takes effect once.
        """
        with self._lock:
            changed_at = self._force_changed_at.get(route_id)
            if changed_at is not None and self.clock() - changed_at < self.force_settle_seconds:
                return
            self._apply_force(route_id, state)

    def route_ids(self) -> list[str]:
        with self._lock:
            return list(self._routes)

    def snapshot(self, route_id: str) -> dict[str, Any]:
        with self._lock:
            return self._route(route_id).snapshot(self.clock())

    def success_rate(self, route_id: str) -> float | None:
        rate: float | None = self.snapshot(route_id)["success_rate"]
        return rate


class RetryBudget:
    """Backups may add at most ``ratio`` retries per request in flight (plus a small floor).

    When every route is down, each request would otherwise multiply into several upstream
    calls; the budget caps the extra load to a share of real traffic.
    """

    def __init__(self, ratio: float = 0.5, minimum: int = 10) -> None:
        self.ratio = ratio
        self.minimum = minimum
        self.in_flight = 0
        self.retries_in_flight = 0
        self._lock = threading.Lock()

    def start_request(self) -> None:
        with self._lock:
            self.in_flight += 1

    def end_request(self, retries: int = 0) -> None:
        """A request ended, with the ``retries`` it had made (each ended with it)."""
        with self._lock:
            self.in_flight = max(0, self.in_flight - 1)
            self.retries_in_flight = max(0, self.retries_in_flight - retries)

    def try_retry(self) -> bool:
        with self._lock:
            if self.retries_in_flight >= max(self.minimum, int(self.ratio * self.in_flight)):
                return False
            self.retries_in_flight += 1
            return True

    def end_retry(self) -> None:
        with self._lock:
            self.retries_in_flight = max(0, self.retries_in_flight - 1)


def counts_against_route(error: ProviderError) -> bool:
    """Failures that say the route is unwell (not that the client's request was bad).

    Timeouts, network errors, rate limits and server errors count; so do 401/403/404, which
    mean the operator's credential or upstream model is wrong. 400/413/422 are the request's.
    """
    return error.timeout or error.status in (401, 403, 404, 408, 429, 529) or error.status >= 500
