"""Route breakers shared by every gateway process, through Redis (when ``GLASSKEY_REDIS_URL`` is set).

Each process keeps its own ``HealthBoard`` (statistics, latency, its own view of the breaker) and
adds a shared layer on top of it:

* Every process reports its outcomes: ``record`` only appends to a small buffer (the hot path never
  waits on Redis), and a background loop sends the buffer every ``sync_interval_seconds`` (0.1 s)
  to one Lua script per route that has news or is not closed (a quiet closed route costs nothing).
  The script keeps the route's consecutive failures and its failure rate across all processes and
  opens the shared breaker when either rule of the policy trips, or when a process reports that its
  own breaker opened. The failure rate is counted in ``WINDOW_BUCKETS`` buckets of one twelfth of
  the policy's window each (so the shared window spans between 11/12 of the window and all of it),
  over every process's outcomes: N processes each seeing a share of a failing route's traffic trip
  it as one process seeing all of it would, not each after ``minimum_requests`` of its own. A set of
  the opened routes lets a process learn of one it has not selected yet, so even its first request
  skips it.
* The same call answers the shared state of the route, which the process then obeys: ``open`` (skip
  it), ``probe_other`` (another process holds the half-open probe: skip it), ``probe_mine`` (this
  process may let its half-open probes through) or ``closed``. So a breaker opened in one process
  is skipped by every process within one sync interval, and the half-open probes are those of the
  one process holding the probe lease, not N times as many. The lease expires after
  ``probe_lease_seconds``, so a holder that dies or sees no traffic hands it on.
* An operator's force lives on the route row (every process reads it); the process that writes a
  lift also resets the route's shared state, once (``force``), not every process that learns of it.

The script reads Redis's own clock, so processes with skewed clocks agree on cooldowns. When Redis
cannot be reached, the shared layer steps aside: every process decides alone, as without Redis,
until the next sync succeeds (``redis_up`` and ``sync_failures`` tell ``/readyz`` and ``/metrics``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from glasskey.routing.health import CLOSED, HALF_OPEN, OPEN, BreakerPolicy, HealthBoard, RouteHealth, Sample

log = logging.getLogger("glasskey.health")
OUTCOMES_MAX = 64  # per route between two syncs; more says nothing the last 64 do not
BLOCKED = ("open", "probe_other")
WINDOW_BUCKETS = 12  # the shared failure-rate window, in buckets of 1/12 of the policy's window

_SCRIPT = """
local key = KEYS[1]
local opened = KEYS[2]
local route_id = ARGV[7]
local outcomes = ARGV[1]
local threshold = tonumber(ARGV[2])
local cooldown_ms = tonumber(ARGV[3])
local event = ARGV[4]
local me = ARGV[5]
local lease_ms = tonumber(ARGV[6])
local window_ms = tonumber(ARGV[8])
local failure_rate = tonumber(ARGV[9])
local minimum_requests = tonumber(ARGV[10])
local buckets = tonumber(ARGV[11])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local bucket = math.floor(now / math.max(1, math.floor(window_ms / buckets)))
-- The failure-rate window: fields 'ok:<bucket>' and 'fail:<bucket>'; sums what is in the window,
-- drops what left it (or everything, when the breaker opens or closes: it restarts clean).
local function window(clear)
  local fields = redis.call('HGETALL', key)
  local total, failures = 0, 0
  for i = 1, #fields, 2 do
    local kind, index = string.match(fields[i], '^(%a+):(%d+)$')
    if kind then
      if clear or tonumber(index) <= bucket - buckets then
        redis.call('HDEL', key, fields[i])
      else
        local n = tonumber(fields[i + 1])
        total = total + n
        if kind == 'fail' then failures = failures + n end
      end
    end
  end
  return total, failures
end
if event == 'reset' then redis.call('DEL', key); redis.call('SREM', opened, route_id) end
local h = redis.call('HMGET', key, 'consecutive', 'open_until', 'probe', 'probe_until')
local consecutive = tonumber(h[1]) or 0
local open_until = tonumber(h[2]) or 0
local probe = h[3] or ''
local probe_until = tonumber(h[4]) or 0
if event == 'closed' and probe == me then
  open_until = 0; probe = ''; probe_until = 0; consecutive = 0
  window(true)
elseif event == 'opened' and (open_until == 0 or probe == me) then
  open_until = now + cooldown_ms; probe = ''; probe_until = 0; consecutive = 0
  window(true)
end
if open_until == 0 and #outcomes > 0 then
  local ok_count, fail_count = 0, 0
  for i = 1, #outcomes do
    if string.sub(outcomes, i, i) == '0' then
      consecutive = consecutive + 1; fail_count = fail_count + 1
    else
      consecutive = 0; ok_count = ok_count + 1
    end
  end
  if ok_count > 0 then redis.call('HINCRBY', key, 'ok:' .. bucket, ok_count) end
  if fail_count > 0 then redis.call('HINCRBY', key, 'fail:' .. bucket, fail_count) end
  local total, failures = window(false)
  local rate_tripped = total >= minimum_requests and failures >= failure_rate * total
  if consecutive >= threshold or rate_tripped then
    open_until = now + cooldown_ms; consecutive = 0
    window(true)
  end
end
local status = 'closed'
if open_until > 0 then
  if now < open_until then
    status = 'open'
  else
    if probe == '' or probe_until < now then probe = me; probe_until = now + lease_ms end
    if probe == me then status = 'probe_mine' else status = 'probe_other' end
  end
end
redis.call('HSET', key, 'consecutive', consecutive, 'open_until', open_until,
           'probe', probe, 'probe_until', probe_until)
redis.call('PEXPIRE', key, 86400000)
if open_until > 0 then redis.call('SADD', opened, route_id) else redis.call('SREM', opened, route_id) end
return {status, math.max(0, open_until - now)}
"""


class SharedHealthBoard(HealthBoard):
    """A ``HealthBoard`` whose breakers every process shares through Redis."""

    def __init__(
        self,
        clock: Callable[[], float],
        redis_url: str,
        policy: BreakerPolicy | None = None,
        *,
        force_settle_seconds: float = 2.0,
        sync_interval_seconds: float = 0.1,
        probe_lease_seconds: float = 10.0,
        prefix: str = "glasskey:breaker:",
    ) -> None:
        super().__init__(clock, policy, force_settle_seconds=force_settle_seconds)
        self.client = redis.Redis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self.prefix = prefix
        self.opened_key = prefix + "#opened"  # the ids of routes whose shared breaker is not closed
        self.sync_interval_seconds = sync_interval_seconds
        self.probe_lease_ms = int(probe_lease_seconds * 1000)
        self.process_id = uuid.uuid4().hex
        self._script = self.client.register_script(_SCRIPT)
        self._outcomes: dict[str, str] = {}
        self._events: dict[str, str] = {}
        # route -> (shared status, milliseconds until it half-opens, when it was read)
        self._shared: dict[str, tuple[str, int, float]] = {}
        self.redis_up = True
        self.sync_failures = 0

    # --- the hot path: local decisions, the shared status laid over them ---------------------

    def _blocked(self, route_id: str, health: RouteHealth) -> bool:
        shared = self._shared.get(route_id)
        return health.forced is None and shared is not None and shared[0] in BLOCKED

    def state(self, route_id: str) -> str:
        with self._lock:
            health = self._route(route_id)
            return OPEN if self._blocked(route_id, health) else health.current_state(self.clock())

    def try_acquire(self, route_id: str) -> bool:
        with self._lock:
            health = self._route(route_id)
            if self._blocked(route_id, health):
                return False
            shared = self._shared.get(route_id)
            now = self.clock()
            if shared is not None and shared[0] == "probe_mine" and health.forced is None:
                # This process holds the probe lease: its breaker half-opens now, wherever it stood.
                if health.current_state(now) != HALF_OPEN:
                    # Opened a whole cooldown back, and more: ``now - (now - cooldown)`` can round to
                    # just below the cooldown, which left the lease holder's first probe refused.
                    health.state, health.opened_at = OPEN, now - 2 * self.policy.cooldown_seconds
            elif shared is not None and health.forced is None and health.current_state(now) == HALF_OPEN:
                return False  # a local cooldown ended, but only the lease holder probes
            return health.try_acquire(now)

    def record(
        self, route_id: str, *, ok: bool, latency_ms: int, error_class: str | None = None, ttft_ms: int | None = None
    ) -> None:
        with self._lock:
            now = self.clock()
            health = self._route(route_id)
            before = health.current_state(now)
            health.record(Sample(now, ok, error_class, latency_ms, ttft_ms))
            if health.forced is not None:
                return  # a forced route's outcomes say nothing the operator has not overruled
            self._outcomes[route_id] = (self._outcomes.get(route_id, "") + ("1" if ok else "0"))[-OUTCOMES_MAX:]
            if before in (CLOSED, HALF_OPEN) and health.state == OPEN:
                self._events[route_id] = "opened"
            elif before == HALF_OPEN and health.state == CLOSED:
                self._events[route_id] = "closed"

    def force(self, route_id: str, state: str | None) -> None:
        with self._lock:
            if self._apply_force(route_id, state):
                # Lifted by this process (the operator's write): the shared count restarts once.
                self._events[route_id] = "reset"
                self._shared.pop(route_id, None)

    def snapshot(self, route_id: str) -> dict[str, Any]:
        view = super().snapshot(route_id)
        with self._lock:
            shared = self._shared.get(route_id)
            if shared is not None and view["forced"] is None and shared[0] in BLOCKED:
                view["circuit"] = OPEN
                remaining_s = max(0.0, shared[1] / 1000 - (self.clock() - shared[2]))
                view["reopens_in_seconds"] = round(remaining_s, 3) if shared[0] == "open" else None
        view["shared"] = None if shared is None else shared[0]
        return view

    # --- the background sync ------------------------------------------------------------------

    async def sync_once(self) -> None:
        """Send the buffered outcomes and events; read back and obey every route's shared state."""
        try:
            # Routes opened by other processes, also those this one has not selected yet.
            opened = await self.client.smembers(self.opened_key)
        except RedisError:
            self._went_away({})
            raise
        opened_ids = {r.decode() if isinstance(r, bytes) else str(r) for r in opened}
        with self._lock:
            for route_id in opened_ids:
                self._route(route_id)
            outcomes, self._outcomes = self._outcomes, {}
            events, self._events = self._events, {}
            # Only routes with news, or whose shared breaker is not closed: a quiet closed route costs nothing.
            quiet = {route_id for route_id, shared in self._shared.items() if shared[0] == "closed"}
            news = opened_ids | set(outcomes) | set(events)
            route_ids = [r for r in self._routes if r in news or r not in quiet]
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for route_id in route_ids:
                    await self._script(
                        keys=[self.prefix + route_id, self.opened_key],
                        args=[
                            outcomes.get(route_id, ""),
                            self.policy.consecutive_failures,
                            int(self.policy.cooldown_seconds * 1000),
                            events.get(route_id, ""),
                            self.process_id,
                            self.probe_lease_ms,
                            route_id,
                            int(self.policy.window_seconds * 1000),
                            repr(self.policy.failure_rate),
                            self.policy.minimum_requests,
                            WINDOW_BUCKETS,
                        ],
                        client=pipe,
                    )
                answers = await pipe.execute()
        except RedisError:
            self._went_away(events)
            raise
        self.redis_up = True
        now = self.clock()
        with self._lock:
            for route_id, (status, remaining_ms) in zip(route_ids, answers, strict=True):
                name = status.decode() if isinstance(status, bytes) else str(status)
                self._shared[route_id] = (name, int(remaining_ms), now)
                health = self._route(route_id)
                closed_elsewhere = name == "closed" and health.forced is None and route_id not in self._events
                if closed_elsewhere and health.state != CLOSED:
                    # Another process's probes closed the shared breaker: this one follows, from a clean window.
                    health.state, health.consecutive_failures = CLOSED, 0
                    health.samples.clear()

    def _went_away(self, events: dict[str, str]) -> None:
        self.sync_failures += 1
        with self._lock:
            if self.redis_up:
                log.warning("Redis unreachable: route breakers are decided per process until it is back")
            self.redis_up = False
            self._shared.clear()  # each process decides alone
            for route_id, event in events.items():
                self._events.setdefault(route_id, event)  # a lift's reset must still reach Redis

    async def run(self) -> None:
        """Sync forever (the app's lifespan runs it); an unreachable Redis is retried every interval."""
        while True:
            await asyncio.sleep(self.sync_interval_seconds)
            try:
                await self.sync_once()
            except RedisError:
                continue

    async def aclose(self) -> None:
        await self.client.aclose()
