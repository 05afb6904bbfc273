"""The throttle on failed authentications at the gateway: per client address and per public id.

A garbage key costs the gateway a receipt per request unless something stops it (issue 18 #6: 673
receipts/s). Failures are counted per minute (a fixed window, the same minute as the
``auth_failures`` rows) for the client address, and for the public id when it names a known key
(a random public id would give every request its own count). Then, within one minute:

- the first ``receipts_per_minute`` failures of an address or public id get a receipt, as any
  failed request does; past that they are only counted (``auth_failures``), not receipted;
- past ``refused_after_per_minute`` they are refused before any more work: 429 ``source: key``,
  ``retry-after`` the end of the minute, still counted and never receipted.

Only failures count: a valid key is never slowed down, whatever its address did, so the throttle
costs a successful request nothing. With ``GLASSKEY_REDIS_URL`` the counts live in Redis (one Lua
script per failure, on Redis's clock), shared by every process; if Redis fails, this process's
own counts take over. In memory, counts of at most ``tracked_max`` names are kept per minute.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as redis
from redis.exceptions import RedisError

from glasskey.errors import APIKeyError
from glasskey.keys.auth_failures import AuthFailureLog

log = logging.getLogger("glasskey.auth_throttle")
WINDOW_SECONDS = 60


@dataclass(frozen=True)
class AuthLimits:
    """Failures per minute, per address and per public id."""

    receipts_per_minute: int = 20
    refused_after_per_minute: int = 120
    tracked_max: int = 100_000


@dataclass(frozen=True)
class Counted:
    """This minute's failures (this one included) of the address and of the public id (0: none)."""

    address_count: int
    public_id_count: int
    seconds_left: float


class MemoryFailureCounter:
    """This process's counts of the current minute."""

    def __init__(self, limits: AuthLimits = AuthLimits(), clock: Callable[[], float] = time.time) -> None:
        self.limits = limits
        self.clock = clock
        self._minute = -1
        self._counts: dict[str, int] = {}

    async def count(self, address: str, public_id: str | None) -> Counted:
        now = self.clock()
        minute = int(now // WINDOW_SECONDS)
        if minute != self._minute:
            self._minute, self._counts = minute, {}
        names = [f"a:{address}"] + ([f"p:{public_id}"] if public_id is not None else [])
        counts = [self._bump(name) for name in names]
        return Counted(counts[0], counts[1] if public_id is not None else 0, (minute + 1) * WINDOW_SECONDS - now)

    def _bump(self, name: str) -> int:
        if name not in self._counts and len(self._counts) >= self.limits.tracked_max:
            # Full: a name not seen this minute gets no receipt, but is not refused either.
            return self.limits.receipts_per_minute + 1
        count = self._counts[name] = self._counts.get(name, 0) + 1
        return count

    async def aclose(self) -> None:
        return None


_COUNT = """
local t = redis.call('TIME')
local minute = math.floor(tonumber(t[1]) / 60)
local left_ms = (minute + 1) * 60000 - (tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local result = {left_ms}
for i, name in ipairs(ARGV) do
  local key = KEYS[1] .. minute .. ':' .. name
  local count = redis.call('INCR', key)
  if count == 1 then redis.call('EXPIRE', key, 120) end
  result[i + 1] = count
end
return result
"""


class RedisFailureCounter:
    """The counts in Redis, shared by every gateway process; this process's own when Redis fails."""

    def __init__(self, url: str, limits: AuthLimits = AuthLimits(), *, prefix: str = "glasskey:authfail:") -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self.prefix = prefix
        self.fallback = MemoryFailureCounter(limits)
        self._count = self.client.register_script(_COUNT)
        self.failures = 0

    async def count(self, address: str, public_id: str | None) -> Counted:
        names = [f"a:{address}"] + ([f"p:{public_id}"] if public_id is not None else [])
        try:
            result = await self._count(keys=[self.prefix], args=names)
        except RedisError:
            self.failures += 1
            log.warning("auth throttle: Redis unavailable, using this process's counts", exc_info=True)
            return await self.fallback.count(address, public_id)
        left_ms, *counts = (int(value) for value in result)
        return Counted(counts[0], counts[1] if public_id is not None else 0, left_ms / 1000)

    async def aclose(self) -> None:
        await self.client.aclose()


FailureCounter = MemoryFailureCounter | RedisFailureCounter


def build_counter(redis_url: str, limits: AuthLimits) -> FailureCounter:
    return RedisFailureCounter(redis_url, limits) if redis_url else MemoryFailureCounter(limits)


@dataclass(frozen=True)
class Verdict:
    """What one failed authentication leaves: a receipt or only a count, and a 429 in place of the 401."""

    receipted: bool
    refusal: APIKeyError | None = None


def too_many(scope: str, seconds_left: float) -> APIKeyError:
    retry_after = max(1, int(seconds_left + 0.999))
    return APIKeyError(
        f"Too many failed authentications {scope} this minute: try again in {retry_after} seconds",
        code="too_many_failed_authentications",
        status_code=429,
        headers={"retry-after": str(retry_after)},
    )


class AuthThrottle:
    """Counts each failed authentication (in ``auth_failures`` too) and says what it leaves."""

    def __init__(self, counter: FailureCounter, failure_log: AuthFailureLog, limits: AuthLimits) -> None:
        self.counter = counter
        self.failure_log = failure_log
        self.limits = limits

    async def failed(self, address: str | None, known_public_id: str | None) -> Verdict:
        """One failed authentication from ``address`` (None: not known), naming ``known_public_id``
        (None unless the key it names exists)."""
        self.failure_log.add(address, known_public_id)
        counted = await self.counter.count(address or "", known_public_id)
        limits = self.limits
        if counted.address_count > limits.refused_after_per_minute:
            return Verdict(receipted=False, refusal=too_many("from this address", counted.seconds_left))
        if counted.public_id_count > limits.refused_after_per_minute:
            return Verdict(receipted=False, refusal=too_many("for this key", counted.seconds_left))
        receipted = max(counted.address_count, counted.public_id_count) <= limits.receipts_per_minute
        return Verdict(receipted=receipted)

    async def aclose(self) -> None:
        await self.failure_log.aclose()
        await self.counter.aclose()
