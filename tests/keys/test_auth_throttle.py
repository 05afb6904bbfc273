"""The failed-authentication throttle: its verdicts, its bounded memory, and its shared Redis counts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import anyio

from conftest_helpers import require_redis
from glasskey.keys.auth_failures import minute_of
from glasskey.keys.auth_throttle import (
    AuthLimits,
    AuthThrottle,
    Counted,
    MemoryFailureCounter,
    RedisFailureCounter,
)

LIMITS = AuthLimits(receipts_per_minute=2, refused_after_per_minute=4, tracked_max=3)


class FakeLog:
    """Stands in for ``AuthFailureLog``: remembers what it was asked to count."""

    def __init__(self) -> None:
        self.added: list[tuple[str | None, str | None]] = []

    def add(self, address: str | None, public_id: str | None) -> None:
        self.added.append((address, public_id))

    async def aclose(self) -> None:
        return None


def test_receipts_then_counts_then_refusals_per_address():
    log = FakeLog()
    throttle = AuthThrottle(MemoryFailureCounter(LIMITS, clock=lambda: 600.0), log, LIMITS)  # type: ignore[arg-type]

    async def scenario() -> list[Any]:
        return [await throttle.failed("10.0.0.1", None) for _ in range(6)]

    verdicts = anyio.run(scenario)
    assert [v.receipted for v in verdicts] == [True, True, False, False, False, False]
    assert [v.refusal is not None for v in verdicts] == [False, False, False, False, True, True]
    refusal = verdicts[-1].refusal
    assert refusal.status_code == 429 and refusal.source == "key"
    assert refusal.headers["retry-after"] == "60"  # the minute began at 600 s: it has all of it left
    assert len(log.added) == 6  # every failure is counted, receipted or not


def test_the_minute_turning_starts_the_counts_again():
    now = [600.0]
    counter = MemoryFailureCounter(LIMITS, clock=lambda: now[0])

    async def scenario() -> list[Counted]:
        first = [await counter.count("10.0.0.1", "abc") for _ in range(3)]
        now[0] = 660.5
        return [*first, await counter.count("10.0.0.1", "abc")]

    counts = anyio.run(scenario)
    assert [(c.address_count, c.public_id_count) for c in counts] == [(1, 1), (2, 2), (3, 3), (1, 1)]
    assert counts[-1].seconds_left == 59.5


def test_memory_holds_at_most_tracked_max_names_and_a_new_name_gets_no_receipt():
    counter = MemoryFailureCounter(LIMITS, clock=lambda: 600.0)

    async def scenario() -> list[Counted]:
        return [await counter.count(f"10.0.0.{n}", None) for n in range(5)]

    counts = anyio.run(scenario)
    assert [c.address_count for c in counts] == [1, 1, 1, 3, 3]  # past 3 names: over the receipt threshold
    assert len(counter._counts) == 3


def test_two_processes_share_the_counts_in_redis_and_fall_back_when_it_fails():
    url = require_redis()
    prefix = f"test:{uuid.uuid4().hex}:"

    async def scenario() -> tuple[list[Counted], Counted, int]:
        first, second = RedisFailureCounter(url, LIMITS, prefix=prefix), RedisFailureCounter(url, LIMITS, prefix=prefix)
        broken = RedisFailureCounter("redis://127.0.0.1:1/0", LIMITS, prefix=prefix)
        try:
            counts = [await counter.count("10.0.0.9", "pubid") for counter in (first, second, first)]
            fallback = await broken.count("10.0.0.9", None)
            return counts, fallback, broken.failures
        finally:
            keys = [key async for key in first.client.scan_iter(match=prefix + "*")]
            if keys:
                await first.client.delete(*keys)
            for counter in (first, second, broken):
                await counter.aclose()

    counts, fallback, failures = anyio.run(scenario)
    assert [(c.address_count, c.public_id_count) for c in counts] == [(1, 1), (2, 2), (3, 3)]
    assert all(0 < c.seconds_left <= 60 for c in counts)
    assert (fallback.address_count, failures) == (1, 1)  # this process's own count took over


def test_minute_of_a_failure_is_its_row():
    assert minute_of(datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC)) == datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
