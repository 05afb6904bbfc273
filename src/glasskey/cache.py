"""Short-lived copies of what every request reads: keys, models, routes, wallet accounts.

The hot path must not wait on the database for facts that rarely change. Each entry lives
``ttl_seconds`` (1 s by default), so a revoked key, a changed policy or a disabled route takes
effect within one second on every process even with no invalidation messages. With Redis, an
admin change is also announced (``glasskey.invalidation``) and every process drops its entries at
once (``invalidate``); the TTL stays the fallback when Redis is away. Misses are loaded in a
worker thread; the number of entries is bounded (least recently used go first).

An entry read after half its life is reloaded in the background while the request goes on with
it (it is still within its TTL), so under steady traffic no request waits on a reload: before,
every entry's expiry made one request per second per entry wait for a database read.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy import Connection

from glasskey.store.database import Database

log = logging.getLogger("glasskey.cache")
T = TypeVar("T")
READS_MAX = 3  # reads of one miss when invalidations keep coming during them; the last one is used
_MISSING = object()


class ReadCache:
    def __init__(
        self,
        db: Database,
        *,
        ttl_seconds: float = 1.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self.clock = clock
        # key -> (expires at, reload after, value)
        self._entries: OrderedDict[Hashable, tuple[float, float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._reloading: dict[Hashable, asyncio.Task[None]] = {}
        # Bumped by ``invalidate``: a read begun before it must not put back what it read.
        self.generation = 0
        self.hits = 0
        self.misses = 0
        self.reloads = 0

    def _peek(self, key: Hashable) -> tuple[Any, bool]:
        """The live value (or ``_MISSING``), and whether it is old enough to reload."""
        with self._lock:
            entry = self._entries.get(key)
            now = self.clock()
            if entry is None or entry[0] <= now:
                return _MISSING, False
            self._entries.move_to_end(key)
            return entry[2], entry[1] <= now

    def _put(self, key: Hashable, value: Any, generation: int) -> None:
        with self._lock:
            if generation != self.generation:
                return  # read before an invalidation: possibly stale
            now = self.clock()
            self._entries[key] = (now + self.ttl_seconds, now + self.ttl_seconds / 2, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    async def _load(self, key: Hashable, load: Callable[[Connection], T]) -> T:
        def read() -> T:
            with self.db.read() as conn:
                return load(conn)

        for _ in range(READS_MAX):
            generation = self.generation
            loaded = await anyio.to_thread.run_sync(read)
            if generation == self.generation:
                break
            # Invalidated during the read: what was read may predate the change. Read again, so
            # that no caller is handed a copy older than an invalidation it could have seen.
        self._put(key, loaded, generation)
        return loaded

    async def _reload(self, key: Hashable, load: Callable[[Connection], Any]) -> None:
        try:
            await self._load(key, load)
        except Exception:  # the entry expires as it would have; the next request reads it itself
            log.warning("background reload of a cache entry failed", exc_info=True)
        finally:
            self._reloading.pop(key, None)

    async def get(self, key: Hashable, load: Callable[[Connection], T]) -> T:
        """The cached value for ``key``, or ``load``'s result read now (and kept for the TTL)."""
        value, stale = self._peek(key)
        if value is _MISSING:
            self.misses += 1
            return await self._load(key, load)
        self.hits += 1
        if stale and key not in self._reloading:
            self.reloads += 1
            self._reloading[key] = asyncio.get_running_loop().create_task(self._reload(key, load))
        return value  # type: ignore[no-any-return]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def invalidate(self) -> None:
        """Drop every entry now, and whatever reads are in flight would have put back (an admin change)."""
        with self._lock:
            self.generation += 1
            self._entries.clear()
