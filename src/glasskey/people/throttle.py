"""The sign-in throttle: failed sign-ins and wrong admin credentials, limited per client address,
per account, and for the whole gateway.

Each scope keeps a sliding window of its failures. While any scope of an attempt is at its limit
the attempt is refused before the credential is even looked at (429, ``retry-after``, a message
saying why): a right guess then answers the same as a wrong one, so the throttle cannot be probed.
Only failures count, so people who type their password right are never slowed down by it.

The global limit stops a spread-out guessing campaign (many addresses); its price is that such a
campaign also holds off real sign-ins for a minute, which is why it is well above any honest rate.
With ``GLASSKEY_REDIS_URL`` the windows live in Redis, shared by every process (one Lua script per
check or failure, on Redis's clock); if Redis fails, this process's own windows take over rather
than letting guesses through unthrottled. Accounts are keyed by a hash of the email.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis.asyncio as redis
from redis.exceptions import RedisError

from glasskey.errors import AdminAuthError

log = logging.getLogger("glasskey.throttle")


@dataclass(frozen=True)
class ThrottleLimits:
    """Failures allowed per ``window_seconds``, per scope kind."""

    per_address: int = 10
    per_account: int = 10
    whole_gateway: int = 300
    window_seconds: int = 60
    # In-memory windows kept at most (one per address or account seen failing): a flood of
    # distinct addresses cannot grow the process without bound.
    tracked_max: int = 100_000

    def limit_of(self, kind: str) -> int:
        return {"address": self.per_address, "account": self.per_account, "global": self.whole_gateway}[kind]


_MESSAGES = {
    "address": "Too many failed sign-ins from this address",
    "account": "Too many failed sign-ins for this account",
    "global": "Too many failed sign-ins on this gateway right now",
}


def scopes(address: str, account: str | None = None) -> list[tuple[str, str]]:
    """The scopes one attempt counts in: its address, the whole gateway, and the account if named."""
    found = [("address", address or "unknown"), ("global", "all")]
    if account:
        found.append(("account", hashlib.sha256(account.strip().lower().encode()).hexdigest()[:32]))
    return found


def throttled(kind: str, wait_seconds: float) -> AdminAuthError:
    retry_after = max(1, math.ceil(wait_seconds))
    return AdminAuthError(
        f"{_MESSAGES[kind]}: try again in {retry_after} seconds",
        code="too_many_failed_sign_ins",
        status_code=429,
        headers={"retry-after": str(retry_after)},
    )


class MemoryThrottle:
    """The windows of this process."""

    def __init__(self, limits: ThrottleLimits = ThrottleLimits(), clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    async def check(self, attempt: Sequence[tuple[str, str]]) -> None:
        """Raise a 429 if any scope of the attempt is at its limit."""
        now = self.clock()
        with self._lock:
            for kind, ident in attempt:
                window = self._window(f"{kind}:{ident}", now)
                if window is not None and len(window) >= self.limits.limit_of(kind):
                    raise throttled(kind, window[0] + self.limits.window_seconds - now)

    async def fail(self, attempt: Sequence[tuple[str, str]]) -> None:
        now = self.clock()
        with self._lock:
            if len(self._failures) >= self.limits.tracked_max:
                self._prune(now)
            for kind, ident in attempt:
                window = self._window(f"{kind}:{ident}", now)
                if window is None:
                    window = self._failures[f"{kind}:{ident}"] = deque()
                # A window never holds more than its limit: older failures add nothing to a refusal.
                if len(window) >= self.limits.limit_of(kind):
                    window.popleft()
                window.append(now)

    def _window(self, name: str, now: float) -> deque[float] | None:
        window = self._failures.get(name)
        if window is not None:
            while window and window[0] + self.limits.window_seconds <= now:
                window.popleft()
        return window

    def _prune(self, now: float) -> None:
        for name in [
            name
            for name, window in self._failures.items()
            if not window or window[-1] + self.limits.window_seconds <= now
        ]:
            del self._failures[name]
        while len(self._failures) >= self.limits.tracked_max:
            del self._failures[next(iter(self._failures))]

    async def aclose(self) -> None:
        return None


_CHECK = """
local window_ms = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window_ms)
  if redis.call('ZCARD', key) >= tonumber(ARGV[i + 1]) then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    local wait = window_ms
    if oldest[2] then wait = tonumber(oldest[2]) + window_ms - now end
    return {i, wait}
  end
end
return {0, 0}
"""

_FAIL = """
local window_ms = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[2] .. ':' .. i)
  redis.call('ZREMRANGEBYRANK', key, 0, -(tonumber(ARGV[i + 2]) + 1))
  redis.call('PEXPIRE', key, window_ms)
end
return 1
"""


class RedisThrottle:
    """The windows in Redis, shared by every gateway process; this process's own when Redis fails."""

    def __init__(
        self, url: str, limits: ThrottleLimits = ThrottleLimits(), *, prefix: str = "glasskey:signin:"
    ) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self.limits = limits
        self.prefix = prefix
        self.fallback = MemoryThrottle(limits)
        self._check = self.client.register_script(_CHECK)
        self._fail = self.client.register_script(_FAIL)
        self.failures = 0

    def _keys_and_limits(self, attempt: Sequence[tuple[str, str]]) -> tuple[list[str], list[int]]:
        return [f"{self.prefix}{kind}:{ident}" for kind, ident in attempt], [
            self.limits.limit_of(k) for k, _ in attempt
        ]

    async def check(self, attempt: Sequence[tuple[str, str]]) -> None:
        keys, limits = self._keys_and_limits(attempt)
        try:
            index, wait_ms = await self._check(keys=keys, args=[self.limits.window_seconds * 1000, *limits])
        except RedisError:
            self.failures += 1
            log.warning("sign-in throttle: Redis unavailable, using this process's windows", exc_info=True)
            await self.fallback.check(attempt)
            return
        if int(index):
            raise throttled(attempt[int(index) - 1][0], int(wait_ms) / 1000)

    async def fail(self, attempt: Sequence[tuple[str, str]]) -> None:
        keys, limits = self._keys_and_limits(attempt)
        await self.fallback.fail(attempt)
        try:
            await self._fail(keys=keys, args=[self.limits.window_seconds * 1000, uuid.uuid4().hex, *limits])
        except RedisError:
            self.failures += 1
            log.warning("sign-in throttle: Redis unavailable, counted in this process only", exc_info=True)

    async def aclose(self) -> None:
        await self.client.aclose()


Throttle = MemoryThrottle | RedisThrottle


def build_throttle(redis_url: str, limits: ThrottleLimits = ThrottleLimits()) -> Throttle:
    return RedisThrottle(redis_url, limits) if redis_url else MemoryThrottle(limits)
