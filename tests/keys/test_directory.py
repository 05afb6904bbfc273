"""Issue 18 #14: an unknown public id is answered from the cached set of public ids, not the database.

No timing is asserted here (``bench/auth_timing.py`` measures it); what is asserted is the cause of
the difference: with the set cached, a stream of fresh unknown public ids makes no cache miss (no
database read), while a key created behind the cache's back is accepted once the cache is
invalidated (an admin change) or its TTL has passed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from conftest_helpers import make_settings
from gateway_fixtures import seed
from glasskey.errors import APIKeyError
from glasskey.gateway.lifecycle import Lifecycle
from glasskey.keys import directory
from glasskey.keys import secret as key_secret
from glasskey.keys.policy import KeyPolicy
from glasskey.keys.service import create_key
from glasskey.services import Services, build_services


@pytest.fixture
def cached(tmp_path) -> Iterator[tuple[Services, dict[str, str]]]:
    services = build_services(make_settings(tmp_path, cache_ttl_ms=1000))
    now = [1000.0]
    services.cache.clock = lambda: now[0]
    try:
        seeded = seed(services)
        seeded["now"] = now  # type: ignore[assignment]
        yield services, seeded
    finally:
        services.close()


async def _status(lifecycle: Lifecycle, token: str) -> int:
    try:
        await lifecycle.key_of(f"Bearer {token}")
    except APIKeyError as refused:
        return refused.status_code
    return 200


def _new_key(services: Services, org_id: str) -> str:
    with services.db.write() as conn:
        _, full = create_key(
            conn, pepper=services.pepper, org_id=org_id, name="late", policy=KeyPolicy(), now=services.clock()
        )
    return full


def test_fresh_unknown_public_ids_cost_no_database_read(cached):
    services, seeded = cached
    lifecycle = Lifecycle(services)

    async def scenario() -> tuple[int, list[int], int]:
        assert await _status(lifecycle, seeded["routed_key"]) == 200  # loads the set and the key
        misses = services.cache.misses
        statuses = [await _status(lifecycle, key_secret.generate()[0]) for _ in range(50)]
        return misses, statuses, services.cache.misses

    before, statuses, after = asyncio.run(scenario())
    assert statuses == [401] * 50
    assert after == before  # every one answered from the cached set


def test_a_key_created_behind_the_cache_is_accepted_after_an_invalidation_or_the_ttl(cached):
    services, seeded = cached
    lifecycle = Lifecycle(services)
    now: list[float] = seeded["now"]

    async def scenario() -> list[int]:
        statuses = [await _status(lifecycle, seeded["routed_key"])]
        first = _new_key(services, seeded["org_id"])
        statuses.append(await _status(lifecycle, first))  # the cached set predates it
        services.cache.invalidate()  # what an admin API or dashboard change does
        statuses.append(await _status(lifecycle, first))
        second = _new_key(services, seeded["org_id"])  # as the CLI of another process would
        now[0] += 1.01  # past the TTL
        statuses.append(await _status(lifecycle, second))
        return statuses

    assert asyncio.run(scenario()) == [200, 401, 200, 200]


def test_past_its_bound_the_set_is_not_kept_and_every_id_is_looked_up(cached, monkeypatch):
    services, seeded = cached
    monkeypatch.setattr(directory, "PUBLIC_IDS_MAX", 1)
    with services.db.read() as conn:
        assert directory.load_public_ids(conn) is None  # two seeded keys: more than 1
    lifecycle = Lifecycle(services)

    async def scenario() -> list[int]:
        late = _new_key(services, seeded["org_id"])
        return [await _status(lifecycle, token) for token in (seeded["official_key"], late, key_secret.generate()[0])]

    assert asyncio.run(scenario()) == [200, 200, 401]
