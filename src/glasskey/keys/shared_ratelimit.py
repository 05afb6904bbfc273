"""Requests-per-minute limits shared by every gateway process, in Redis.

The same sliding one-minute log as the in-process limiter, kept in one Redis sorted set per key
and updated by one Lua script, so the check and the count are atomic across processes. The
script reads Redis's own clock: gateway processes on machines with skewed clocks still agree.

If Redis cannot be reached the request is let through and the failure is logged and counted: a
rate limit protects throughput, while the money it would guard is held in the database anyway.
"""

from __future__ import annotations

import logging
import math
import uuid

import redis.asyncio as redis
from redis.exceptions import RedisError

from glasskey.errors import BudgetError

log = logging.getLogger("glasskey.ratelimit")
WINDOW_MS = 60_000

_SCRIPT = """
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window_ms = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window_ms)
if redis.call('ZCARD', key) >= limit then
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  local wait = window_ms
  if oldest[2] then wait = tonumber(oldest[2]) + window_ms - now end
  return {0, wait}
end
redis.call('ZADD', key, now, ARGV[3])
redis.call('PEXPIRE', key, window_ms)
return {1, 0}
"""


class RedisRateLimiter:
    def __init__(self, url: str, *, prefix: str = "glasskey:rpm:") -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self.prefix = prefix
        self._script = self.client.register_script(_SCRIPT)
        self.failures = 0

    async def acquire(self, key_id: str, rpm_limit: int | None) -> None:
        """Count one request, or raise ``BudgetError`` (429) with a ``retry-after``."""
        if rpm_limit is None:
            return
        try:
            allowed, wait_ms = await self._script(
                keys=[self.prefix + key_id], args=[rpm_limit, WINDOW_MS, uuid.uuid4().hex]
            )
        except RedisError:
            self.failures += 1
            log.warning("rate limiter unavailable; letting the request through", exc_info=True)
            return
        if not allowed:
            raise BudgetError(
                f"Rate limit of {rpm_limit} requests per minute reached for this key",
                code="rate_limit_exceeded",
                headers={"retry-after": str(max(1, math.ceil(int(wait_ms) / 1000)))},
            )

    async def aclose(self) -> None:
        await self.client.aclose()
