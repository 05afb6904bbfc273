"""The Redis rate limiter: several gateway processes share one count per key (a real Redis)."""

from __future__ import annotations

import uuid

import anyio
import pytest

from conftest_helpers import require_redis
from glasskey.errors import BudgetError
from glasskey.keys.shared_ratelimit import RedisRateLimiter


def test_two_processes_share_one_limit_and_the_refusal_says_when_to_retry():
    url = require_redis()
    prefix = f"test:{uuid.uuid4().hex}:"

    async def scenario() -> None:
        first, second = RedisRateLimiter(url, prefix=prefix), RedisRateLimiter(url, prefix=prefix)
        try:
            for limiter in (first, second, first, second, first):
                await limiter.acquire("key_a", 5)
            with pytest.raises(BudgetError) as refused:
                await second.acquire("key_a", 5)
            assert refused.value.source == "budget"
            assert 1 <= int(refused.value.headers["retry-after"]) <= 60
            await first.acquire("key_b", 5)  # other keys have their own count
            await first.acquire("key_a", None)  # no limit, no count
            assert first.failures == second.failures == 0
        finally:
            await first.client.delete(prefix + "key_a", prefix + "key_b")
            await first.aclose()
            await second.aclose()

    anyio.run(scenario)


def test_an_unreachable_redis_lets_requests_through_and_counts_the_failure():
    async def scenario() -> None:
        limiter = RedisRateLimiter("redis://127.0.0.1:1/0")
        await limiter.acquire("key_a", 1)
        await limiter.acquire("key_a", 1)
        assert limiter.failures == 2
        await limiter.aclose()

    anyio.run(scenario)
