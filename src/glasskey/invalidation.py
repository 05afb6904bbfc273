"""Admin changes announced to every gateway process by Redis pub/sub, so caches drop them at once.

A revoked key, a changed route, price, policy or member is written to the database by one process;
the others hold a copy in their read cache for up to its TTL (1 s). With Redis, the writing process
publishes one message on ``CHANNEL`` after any successful admin or dashboard change, and every
process (the writer too, at once) invalidates its whole read cache: entries are cheap to read again,
and a coarse message cannot forget a kind of fact. ``InvalidationMiddleware`` does the publishing
for every mutating request outside ``/v1``, so no admin endpoint can forget to; the CLI's changes
are announced by ``announce_once`` after each committed change (``cli.base.writing``).

When Redis is away, messages are lost and the cache TTL is the fallback; on reconnecting, each
process invalidates once, for whatever it missed. ``redis_up`` and the counters feed ``/readyz``
and ``/metrics``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import redis
import redis.asyncio as async_redis
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from glasskey.cache import ReadCache
from glasskey.routing.health import HealthBoard

log = logging.getLogger("glasskey.invalidation")
CHANNEL = "glasskey:invalidate"
MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Public mutations that change nothing the read cache holds: announcing them would let anyone make
# every process drop its cache at will (a sign-in form posted in a loop).
NOT_ANNOUNCED = ("/signin", "/signout", "/invitation", "/invitations/accept")
RECONNECT_SECONDS = 0.5


class Invalidation:
    """Publishes this process's changes and applies everyone's to ``cache``."""

    def __init__(
        self, cache: ReadCache, redis_url: str = "", *, board: HealthBoard | None = None, channel: str = CHANNEL
    ) -> None:
        self.cache = cache
        self.board = board
        self.channel = channel
        self.origin = uuid.uuid4().hex
        # No socket timeout: a subscriber waits for messages as long as there are none.
        self.client = async_redis.Redis.from_url(redis_url, socket_connect_timeout=0.5) if redis_url else None
        self.redis_up = self.client is not None
        self.published = 0
        self.received = 0
        self.publish_failures = 0

    def _drop(self) -> None:
        self.cache.invalidate()
        if self.board is not None:
            self.board.forget_force_changes()  # no stale route copy is left to guard against

    async def changed(self, what: str) -> None:
        """Something cached changed in the database: drop it here now, and tell every other process."""
        self._drop()
        if self.client is None:
            return
        try:
            await asyncio.wait_for(self.client.publish(self.channel, f"{self.origin} {what}"), timeout=0.5)
            self.published += 1
        except (RedisError, TimeoutError):
            # The others fall back on their cache TTL; the change itself is already in the database.
            self.publish_failures += 1
            log.warning("could not announce a change (%s); other processes see it within the cache TTL", what)

    async def listen(self) -> None:
        """Apply other processes' announcements forever, reconnecting by itself (the app's lifespan runs it)."""
        if self.client is None:
            return
        while True:
            try:
                async with self.client.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    if not self.redis_up:
                        log.info("Redis is back: cache invalidation by pub/sub resumes")
                    self.redis_up = True
                    self._drop()  # whatever was announced while away
                    while True:
                        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                        if message is not None and message["type"] == "message":
                            self._apply(message["data"])
            except (RedisError, OSError):
                if self.redis_up:
                    log.warning("Redis unreachable: caches fall back on their TTL until it is back")
                self.redis_up = False
                await asyncio.sleep(RECONNECT_SECONDS)

    def _apply(self, data: bytes | str) -> None:
        text = data.decode() if isinstance(data, bytes) else data
        if text.split(" ", 1)[0] != self.origin:  # our own change was applied when it was made
            self.received += 1
            self._drop()

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()


def announce_once(redis_url: str, what: str, *, channel: str = CHANNEL) -> bool:
    """Announce one change made by a process that keeps no read cache and does not listen (the CLI).

    Synchronous, bounded by 0.5 s, under an origin of its own, so every gateway drops its cache.
    Returns whether it was published; when not, the gateways see the change within their cache TTL.
    """
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        client.publish(channel, f"{uuid.uuid4().hex} {what}")
    except (RedisError, OSError):
        return False
    finally:
        client.close()
    return True


class InvalidationMiddleware:
    """After any successful mutating request outside ``/v1`` (admin API, dashboard), announce it
    (not the public sign-in and invitation forms, which change nothing cached)."""

    def __init__(self, app: ASGIApp, invalidation: Invalidation) -> None:
        self.app = app
        self.invalidation = invalidation

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or scope["method"] not in MUTATING_METHODS
            or path.startswith("/v1")
            or path.endswith(NOT_ANNOUNCED)
        ):
            await self.app(scope, receive, send)
            return
        status = 500

        async def remember_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if status < 400:
                    # Before the client hears the answer: once it has it, the change holds everywhere.
                    await self.invalidation.changed(f"{scope['method']} {path}")
            await send(message)

        await self.app(scope, receive, remember_status)
