"""Whether this process should be sent traffic (``/readyz``), and what is degraded (also in ``/metrics``).

``/healthz`` says the process is alive. ``/readyz`` says it can serve: its database answers and its
schema is not behind this code's migrations (else 503, so a load balancer sends traffic elsewhere). Redis is
checked when configured, but its absence does not make the process unready: serving continues
with rate limits per process, breakers decided per process and caches falling back on their TTL,
each listed under ``degraded`` so an operator sees what is lost (docs/deployment.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from glasskey.keys.shared_ratelimit import RedisRateLimiter
from glasskey.people.throttle import RedisThrottle
from glasskey.routing.shared_health import SharedHealthBoard
from glasskey.store.migrations import alembic_config
from glasskey.store.outage import OUTAGES

if TYPE_CHECKING:
    from glasskey.services import Services

REDIS_PING_TIMEOUT_SECONDS = 0.5
# What each feature does without Redis, as /readyz and docs/deployment.md say it.
WITHOUT_REDIS = {
    "rate_limits": "requests-per-minute limits are counted per process (N processes let up to N times through)",
    "signin_throttle": "failed sign-in counts are kept per process",
    "route_health": "breakers open, half-open and probe per process",
    "cache_invalidation": "admin changes reach other processes within the cache TTL, not at once",
}


def _schema(services: Services) -> dict[str, Any]:
    """The database's revisions against this code's: ``at_head``, ``ahead`` or ``behind``.

    ``ahead`` (a newer release migrated the database, which this process does not know) is ready:
    migrations add before they remove, so the old release serves until it is restarted (an upgrade
    while serving, docs/deployment.md). ``behind`` is not: this code expects what is not there yet."""
    with services.db.read() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    scripts = ScriptDirectory.from_config(alembic_config(services.db))
    head = set(scripts.get_heads())
    known = {revision.revision for revision in scripts.walk_revisions()}
    state = "at_head" if current == head else "ahead" if current - known else "behind"
    return {"current": sorted(current), "head": sorted(head), "at_head": current == head, "state": state}


async def _redis_reachable(services: Services) -> bool:
    client = services.invalidation.client
    if client is None:
        return False
    try:
        return bool(await asyncio.wait_for(client.ping(), timeout=REDIS_PING_TIMEOUT_SECONDS))
    except (RedisError, OSError, TimeoutError):
        return False


async def readiness(services: Services) -> tuple[bool, dict[str, Any]]:
    """Whether the process is ready, and the body of ``/readyz``."""
    body: dict[str, Any] = {}
    try:
        schema = await anyio.to_thread.run_sync(_schema, services)
        body["database"] = "ok"
        body["migrations"] = schema
        ready = schema["state"] != "behind"
    except OUTAGES:
        body["database"] = "unreachable"
        ready = False
    if not services.settings.redis_url:
        body["redis"] = "not configured"
        body["per_process"] = WITHOUT_REDIS
    elif await _redis_reachable(services):
        body["redis"] = "ok"
    else:
        body["redis"] = "unreachable"
        body["degraded"] = WITHOUT_REDIS
    body["status"] = "ready" if ready else "not ready"
    return ready, body


def redis_features_up(services: Services) -> dict[str, bool]:
    """Per feature that uses Redis, whether its last use of Redis worked (empty without Redis)."""
    if not services.settings.redis_url:
        return {}
    health = services.health
    return {
        "route_health": health.redis_up if isinstance(health, SharedHealthBoard) else False,
        "cache_invalidation": services.invalidation.redis_up,
    }


class DependencyCollector(Collector):
    """``glasskey_redis_up{feature}`` (1 or 0) and ``glasskey_redis_failures{feature}`` for ``/metrics``."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "glasskey_redis_up", "Whether Redis answered this feature's last use", labels=["feature"]
        )
        for feature, ok in redis_features_up(self.services).items():
            up.add_metric([feature], 1.0 if ok else 0.0)
        yield up
        failures = GaugeMetricFamily(
            "glasskey_redis_failures", "Times this feature found Redis unreachable", labels=["feature"]
        )
        limiter, health = self.services.rate_limiter, self.services.health
        if isinstance(limiter, RedisRateLimiter):
            failures.add_metric(["rate_limits"], float(limiter.failures))
        if isinstance(health, SharedHealthBoard):
            failures.add_metric(["route_health"], float(health.sync_failures))
        throttle = self.services.signin_throttle
        if isinstance(throttle, RedisThrottle):
            failures.add_metric(["signin_throttle"], float(throttle.failures))
        if self.services.invalidation.client is not None:
            failures.add_metric(["cache_invalidation"], float(self.services.invalidation.publish_failures))
        yield failures
