"""Short-lived copies of what every request reads: keys, models, routes, wallet accounts.

The hot path must not wait on the database for facts that rarely change. Each entry lives
``ttl_seconds`` (1 s by default), so a revoked key, a changed policy or a disabled route takes
effect within one second on every process, with no invalidation messages. Misses are loaded in a
worker thread; the number of entries is bounded (least recently used go first).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy import Connection

from glasskey.store.database import Database

T = TypeVar("T")
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
        self._entries: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def _peek(self, key: Hashable) -> Any:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] <= self.clock():
                return _MISSING
            self._entries.move_to_end(key)
            return entry[1]

    def _put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._entries[key] = (self.clock() + self.ttl_seconds, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    async def get(self, key: Hashable, load: Callable[[Connection], T]) -> T:
        """The cached value for ``key``, or ``load``'s result read now (and kept for the TTL)."""
        value = self._peek(key)
        if value is not _MISSING:
            self.hits += 1
            return value  # type: ignore[no-any-return]
        self.misses += 1

        def read() -> T:
            with self.db.read() as conn:
                return load(conn)

        loaded = await anyio.to_thread.run_sync(read)
        self._put(key, loaded)
        return loaded

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
