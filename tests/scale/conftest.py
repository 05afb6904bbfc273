"""One cluster for the whole of tests/scale: three ``glasskey serve`` processes on PostgreSQL and Redis.

Starting three gateways costs seconds, so the tests share them and run in file order; each uses keys
and routes of its own. Redis and PostgreSQL are reached through loopback forwarders the outage tests
cut, so they go away for these gateways only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from conftest_helpers import REDIS_DB, postgres_schema_url, require_redis
from gateway_fixtures import free_port
from glasskey.keys.policy import KeyPolicy
from glasskey.keys.service import create_key
from glasskey.orgs.service import create_org
from glasskey.routing.routes import update_route
from glasskey.services import Services
from scale_cluster import FAILING_ROUTE, SLOW_ROUTE, Cluster, Keys, cluster
from tcp_forwarder import Forwarder


def prepare(keys: Keys) -> Any:
    def made(services: Services, seeded: dict[str, str]) -> None:
        now = services.clock()
        with services.db.write() as conn:
            # The routed gemini route always answers 500: traffic opens its breaker.
            update_route(conn, FAILING_ROUTE, options={"output_tokens": "max", "fail_status": 500})
            # The routed claude route streams slowly: a stream is still in flight when SIGTERM comes.
            update_route(conn, SLOW_ROUTE, options={"output_tokens": "max", "chunk_delay_ms": 100})
            keys["race_org"] = create_org(conn, "race", now).id
            for name, org_id, model in (
                ("race", keys["race_org"], "gpt-4o-mini"),
                ("revoked", seeded["org_id"], "gpt-4o-mini"),
                ("revoked_after_outage", seeded["org_id"], "gpt-4o-mini"),
                ("load", seeded["org_id"], "gpt-4o-mini"),
                ("database_load", seeded["org_id"], "gpt-4o-mini"),
                ("breaker", seeded["org_id"], "gemini-2.5-flash"),
                ("stream", seeded["org_id"], "claude-sonnet-4-5"),
                ("kill", seeded["org_id"], "claude-sonnet-4-5"),
            ):
                policy = KeyPolicy(allowed_models=(model,), settlement="routed")
                record, full = create_key(
                    conn, pepper=services.pepper, org_id=org_id, name=name, policy=policy, now=now
                )
                keys[name] = (record.id, full)

    return made


@pytest.fixture(scope="session")
def redis_forwarder() -> Iterator[Forwarder]:
    require_redis()
    forwarder = Forwarder(free_port(), 6379)
    forwarder.start()
    yield forwarder
    forwarder.cut()


@pytest.fixture(scope="session")
def postgres_forwarder() -> Iterator[Forwarder]:
    forwarder = Forwarder(free_port(), 5432)
    forwarder.start()
    yield forwarder
    forwarder.cut()


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys()


@pytest.fixture(scope="session")
def three(tmp_path_factory, redis_forwarder: Forwarder, postgres_forwarder: Forwarder, keys: Keys) -> Iterator[Cluster]:
    redis_url = f"redis://127.0.0.1:{redis_forwarder.listen_port}/{REDIS_DB}"
    # The seeded route ids are the same in every run: forget breakers an earlier run left in Redis.
    leftover = redis.Redis.from_url(require_redis())
    leftover.delete(*(f"glasskey:breaker:{route}" for route in (FAILING_ROUTE, SLOW_ROUTE)))
    leftover.srem("glasskey:breaker:#opened", FAILING_ROUTE, SLOW_ROUTE)
    leftover.close()
    for url in postgres_schema_url():
        # A one-minute read cache: only the pub/sub announcement can make a change effective within 1 s.
        with cluster(
            tmp_path_factory.mktemp("three"),
            url,
            redis_url,
            route_options={"output_tokens": "max"},
            prepare=prepare(keys),
            # The gateways reach PostgreSQL and Redis through forwarders the outage tests cut.
            gateway_database_url=url.replace(":5432/", f":{postgres_forwarder.listen_port}/"),
            cache_ttl_ms=60_000,
        ) as made:
            yield made
            made.audit_ok()
