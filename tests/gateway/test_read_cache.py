"""The one-second cache: hits skip the database, entries expire, revocations take effect within the TTL."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import httpx
from sqlalchemy import Connection

from glasskey.cache import ReadCache
from glasskey.keys.service import revoke_key


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def counting_cache(db) -> tuple[Clock, ReadCache, Callable[[Connection], int]]:
    """A one-second cache on a controlled clock, and a load that returns how often it ran."""
    clock = Clock()
    loads: list[int] = []

    def load(conn: Connection) -> int:
        loads.append(1)
        return len(loads)

    return clock, ReadCache(db, ttl_seconds=1.0, clock=clock), load


def test_entries_are_served_from_memory_until_they_expire(sqlite_db):
    clock, cache, load = counting_cache(sqlite_db)

    async def run() -> list[int]:
        seen = [await cache.get("k", load)]
        clock.now += 0.4  # young: served as it is, nothing reloaded
        seen.append(await cache.get("k", load))
        clock.now += 0.61  # expired: read again, and this request waits for it
        seen.append(await cache.get("k", load))
        return seen

    assert anyio.run(run) == [1, 1, 2]
    assert (cache.hits, cache.misses, cache.reloads) == (1, 2, 0)


def test_an_entry_past_half_its_life_is_reloaded_in_the_background_while_it_is_served(sqlite_db):
    clock, cache, load = counting_cache(sqlite_db)

    async def run() -> list[int]:
        seen = [await cache.get("k", load)]
        clock.now += 0.6
        seen.append(await cache.get("k", load))  # still the first value: nobody waits on the reload
        await cache._reloading["k"]
        clock.now += 0.45  # the first value would have expired by now; the reloaded one has not
        seen.append(await cache.get("k", load))
        return seen

    assert anyio.run(run) == [1, 1, 2]
    assert (cache.misses, cache.reloads) == (1, 1)


def test_the_cache_is_bounded(sqlite_db):
    cache = ReadCache(sqlite_db, ttl_seconds=60, max_entries=3)

    def constant(value: int) -> Callable[[Connection], int]:
        return lambda conn: value

    async def fill() -> None:
        for i in range(5):
            await cache.get(i, constant(i))

    anyio.run(fill)
    assert len(cache._entries) == 3
    assert list(cache._entries) == [2, 3, 4]


def test_a_revoked_key_stops_working_within_the_ttl(gateway):
    clock = Clock()
    gateway.services.cache = ReadCache(gateway.services.db, ttl_seconds=1.0, clock=clock)
    headers = {"authorization": f"Bearer {gateway.routed_key}"}
    assert httpx.get(f"{gateway.v1}/key", headers=headers).status_code == 200
    with gateway.services.db.write() as conn:
        revoke_key(conn, gateway.routed_key.rsplit("-", 1)[0], gateway.services.clock())
    # Within the TTL this process may still serve the cached key...
    assert httpx.get(f"{gateway.v1}/key", headers=headers).status_code == 200
    clock.now += 1.001
    # ...and after it, never.
    refused = httpx.get(f"{gateway.v1}/key", headers=headers)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "key_revoked"
