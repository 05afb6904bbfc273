"""Requests-per-minute limits, per key, in this process.

A sliding one-minute log per key: exact, and bounded by the limit itself in memory. Several
gateway processes each enforce the limit on their own traffic; sharing the count across
processes (Redis) is a later step, documented in docs/architecture.md.
"""

from __future__ import annotations

import threading
from collections import deque

from glasskey.errors import BudgetError

WINDOW_SECONDS = 60.0


class RateLimiter:
    def __init__(self) -> None:
        self._log: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, key_id: str, rpm_limit: int | None, now_monotonic: float) -> None:
        """Count one request, or raise ``BudgetError`` (429) with a ``retry-after``."""
        if rpm_limit is None:
            return
        with self._lock:
            log = self._log.setdefault(key_id, deque())
            while log and log[0] <= now_monotonic - WINDOW_SECONDS:
                log.popleft()
            if len(log) >= rpm_limit:
                retry_after = max(1, int(log[0] + WINDOW_SECONDS - now_monotonic + 0.999))
                raise BudgetError(
                    f"Rate limit of {rpm_limit} requests per minute reached for this key",
                    code="rate_limit_exceeded",
                    headers={"retry-after": str(retry_after)},
                )
            log.append(now_monotonic)
