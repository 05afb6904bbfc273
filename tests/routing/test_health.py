"""The breaker of a route on a clock the test controls: open, half-open, closed; and the retry budget."""

from __future__ import annotations

import pytest

from glasskey.routing.health import CLOSED, HALF_OPEN, OPEN, BreakerPolicy, HealthBoard, RetryBudget, percentile


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def board(**policy) -> tuple[HealthBoard, Clock]:
    clock = Clock()
    return HealthBoard(clock, BreakerPolicy(**policy)), clock


def fail(b: HealthBoard, route: str = "r", times: int = 1) -> None:
    for _ in range(times):
        b.record(route, ok=False, latency_ms=5, error_class="server_error")


def test_a_single_error_never_opens_the_breaker():
    b, _ = board()
    fail(b)
    assert b.state("r") == CLOSED
    assert b.try_acquire("r")


def test_consecutive_failures_open_then_cooldown_half_opens_then_probes_close():
    b, clock = board(consecutive_failures=3, cooldown_seconds=30, half_open_probes=2)
    fail(b, times=3)
    assert b.state("r") == OPEN
    assert not b.try_acquire("r")
    clock.now += 29.9
    assert b.state("r") == OPEN
    clock.now += 0.2
    assert b.state("r") == HALF_OPEN
    assert b.try_acquire("r") and b.try_acquire("r")
    assert not b.try_acquire("r"), "only two probes at once"
    b.record("r", ok=True, latency_ms=3)
    assert b.state("r") == HALF_OPEN
    b.record("r", ok=True, latency_ms=3)
    assert b.state("r") == CLOSED


def test_a_failed_probe_opens_the_breaker_for_another_cooldown():
    b, clock = board(consecutive_failures=2, cooldown_seconds=10)
    fail(b, times=2)
    clock.now += 10
    assert b.try_acquire("r")
    fail(b)
    assert b.state("r") == OPEN
    clock.now += 9
    assert b.state("r") == OPEN
    clock.now += 1
    assert b.state("r") == HALF_OPEN


def test_failure_rate_over_the_window_opens_the_breaker():
    b, _ = board(consecutive_failures=100, failure_rate=0.5, minimum_requests=10)
    for _ in range(5):
        b.record("r", ok=True, latency_ms=1)
        fail(b)
    assert b.state("r") == OPEN
    snapshot = b.snapshot("r")
    assert snapshot["requests"] == 10
    assert snapshot["success_rate"] == 0.5
    assert snapshot["errors_by_class"] == {"server_error": 5}


def test_old_samples_leave_the_window():
    b, clock = board(window_seconds=60, consecutive_failures=100, minimum_requests=4)
    fail(b, times=3)
    clock.now += 61
    b.record("r", ok=True, latency_ms=1)
    assert b.snapshot("r")["requests"] == 1
    assert b.state("r") == CLOSED


def test_an_operator_can_force_a_breaker_and_lift_the_force():
    b, _ = board()
    b.force("r", OPEN)
    assert not b.try_acquire("r")
    b.force("r", CLOSED)
    fail(b, times=50)
    assert b.state("r") == CLOSED
    b.force("r", None)
    assert b.state("r") == CLOSED
    with pytest.raises(ValueError):
        b.force("r", HALF_OPEN)


def test_latency_percentiles_are_nearest_rank():
    assert percentile([], 0.5) is None
    assert percentile([1, 2, 3, 4], 0.5) == 2
    assert percentile(list(range(1, 101)), 0.99) == 99
    b, _ = board()
    for ms in (10, 20, 30, 40):
        b.record("r", ok=True, latency_ms=ms, ttft_ms=ms // 2)
    snap = b.snapshot("r")
    assert snap["latency_ms"]["p50"] == 20
    assert snap["ttft_ms"]["p99"] == 20


def test_retry_budget_caps_concurrent_retries_to_a_share_of_requests():
    budget = RetryBudget(ratio=0.5, minimum=2)
    for _ in range(10):
        budget.start_request()
    granted = sum(budget.try_retry() for _ in range(20))
    assert granted == 5
    budget.end_retry()
    assert budget.try_retry()
    assert not budget.try_retry()


def test_active_probes_reach_only_idle_routes_and_feed_the_board(services):
    import anyio

    from glasskey.pricing.catalog import get_model
    from glasskey.routing.probes import probe_idle_routes
    from glasskey.routing.routes import Route, create_route

    with services.db.write() as conn:
        prices = get_model(conn, "gpt-4o-mini").official_prices
        for route_id, options in (("rt-idle", {}), ("rt-busy", {}), ("rt-broken", {"fail_status": 500})):
            create_route(
                conn,
                Route(
                    id=route_id,
                    model="gpt-4o-mini",
                    provider="simulated",
                    base_url="",
                    upstream_model="gpt-4o-mini",
                    settlement="routed",
                    prices=prices,
                    costs=prices,
                    options=options,
                ),
                services.clock(),
            )
    services.health.record("rt-busy", ok=True, latency_ms=3)
    outcomes = anyio.run(probe_idle_routes, services.db, services.health, services.providers)
    assert outcomes == {"rt-idle": True, "rt-broken": False}
    assert services.health.snapshot("rt-idle")["successes"] == 1
    assert services.health.snapshot("rt-broken")["errors_by_class"] == {"server_error": 1}
    assert services.health.snapshot("rt-busy")["requests"] == 1
