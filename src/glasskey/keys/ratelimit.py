"""Requests-per-minute limits, per key, in this process.

A sliding one-minute log per key: exact, and bounded by the limit itself in memory. With
several gateway processes each would enforce the limit on its own traffic; set
``GLASSKEY_REDIS_URL`` to share the count (``shared_ratelimit.RedisRateLimiter``).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

from glasskey.errors import BudgetError

WINDOW_SECONDS = 60.0


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._log: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self.clock = clock

    async def acquire(self, key_id: str, rpm_limit: int | None) -> None:
        """The limiter interface the gateway uses (the Redis limiter has the same)."""
        self.check(key_id, rpm_limit, self.clock())

    async def aclose(self) -> None:
        return None

    def check(self, key_id: str, rpm_limit: int | None, now_monotonic: float) -> None:
        """Count one request, or raise ``BudgetError`` (429) with a ``retry-after``."""
        if rpm_limit is None:
            return
        with self._lock:
            log = self._log.setdefault(key_id, deque())
            while log and log[0] + WINDOW_SECONDS <= now_monotonic:
                log.popleft()
            if len(log) >= rpm_limit:
                wait_seconds = log[0] + WINDOW_SECONDS - now_monotonic if log else WINDOW_SECONDS
                retry_after = max(1, math.ceil(wait_seconds))
                raise BudgetError(
                    f"Rate limit of {rpm_limit} requests per minute reached for this key",
                    code="rate_limit_exceeded",
                    headers={"retry-after": str(retry_after)},
                )
            log.append(now_monotonic)
