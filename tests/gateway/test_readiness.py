"""``/readyz``: ready when the database answers and its schema is not behind the code; Redis only degrades."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import text

from glasskey.readiness import readiness
from glasskey.store.database import Database


def test_a_fresh_gateway_without_redis_is_ready_and_says_what_is_per_process(services):
    ready, body = asyncio.run(readiness(services))
    assert ready and body["status"] == "ready"
    assert body["database"] == "ok" and body["migrations"]["state"] == "at_head"
    assert body["redis"] == "not configured"
    assert "per process" in body["per_process"]["rate_limits"]


def test_a_schema_behind_the_code_is_not_ready_and_one_ahead_of_it_still_serves(services):
    with services.db.write() as conn:
        current = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        conn.execute(text("DELETE FROM alembic_version"))
        conn.execute(text("INSERT INTO alembic_version (version_num) VALUES ('0001')"))
    ready, body = asyncio.run(readiness(services))
    assert not ready and body["migrations"]["state"] == "behind"
    with services.db.write() as conn:
        # A newer release migrated the database: this process keeps serving until it is restarted.
        conn.execute(text("DELETE FROM alembic_version"))
        conn.execute(text("INSERT INTO alembic_version (version_num) VALUES ('a_revision_of_a_newer_release')"))
    ready, body = asyncio.run(readiness(services))
    assert ready and body["migrations"]["state"] == "ahead"
    with services.db.write() as conn:
        conn.execute(text("DELETE FROM alembic_version"))
        for version in current:
            conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": version})
    assert asyncio.run(readiness(services))[1]["migrations"]["state"] == "at_head"


def test_an_unreachable_database_is_not_ready(services):
    services.db = Database("postgresql+psycopg://root@127.0.0.1:1/test")
    ready, body = asyncio.run(readiness(services))
    assert not ready and body["database"] == "unreachable"
    services.db.dispose()


def test_readyz_answers_503_when_not_ready_and_healthz_still_200(gateway):
    assert httpx.get(f"{gateway.base_url}/readyz").status_code == 200
    with gateway.services.db.write() as conn:
        conn.execute(text("DELETE FROM alembic_version"))
        conn.execute(text("INSERT INTO alembic_version (version_num) VALUES ('0001')"))
    answer = httpx.get(f"{gateway.base_url}/readyz")
    assert answer.status_code == 503 and answer.json()["status"] == "not ready"
    assert httpx.get(f"{gateway.base_url}/healthz").status_code == 200
