"""Helpers shared by the fixtures: PostgreSQL schemas per test, and test settings.

PostgreSQL tests use the server at ``GLASSKEY_TEST_POSTGRES_URL`` (default: the local one with
trust auth, database ``test``). Each test gets its own schema, so tests never see each other's
rows. Without a server they are skipped, except under CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, text

from glasskey.people.audit import chain_key
from glasskey.settings import Settings, load_settings
from glasskey.store.database import Database

POSTGRES_URL = os.environ.get("GLASSKEY_TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
# A fixed Fernet key (base64 of "test-encryption-key-0123456789ab"): route credentials of tests are sealed with it.
TEST_ENCRYPTION_KEY = "dGVzdC1lbmNyeXB0aW9uLWtleS0wMTIzNDU2Nzg5YWI="


def _postgres_available() -> bool:
    try:
        engine = create_engine(POSTGRES_URL)
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
        return True
    except Exception:
        return False


_PG_OK: bool | None = None


def require_postgres() -> None:
    global _PG_OK
    if _PG_OK is None:
        _PG_OK = _postgres_available()
    if not _PG_OK:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL} (CI must start it)")
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}")


def postgres_schema_url() -> Iterator[str]:
    """A URL whose connections use a fresh schema, dropped afterwards."""
    require_postgres()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


TEST_KEY_PEPPER = "pepper-for-tests-0123456789abcdef"


def keyed_database(url: str) -> Database:
    """A ``Database`` signing the audit log with the tests' key pepper, as ``make_settings``' services do."""
    return Database(url, audit_chain_key=chain_key(TEST_KEY_PEPPER))


def make_settings(tmp_path, **overrides) -> Settings:
    values = {
        "data_dir": tmp_path,
        "admin_token": "admin-token-for-tests-0123456789",
        "key_pepper": TEST_KEY_PEPPER,
        "encryption_key": TEST_ENCRYPTION_KEY,
        # The fake upstreams of the tests listen on loopback.
        "allow_private_upstreams": True,
        # Tests change routes and keys between requests; the one-second cache has tests of its own.
        "cache_ttl_ms": 0,
        **overrides,
    }
    return load_settings(environ={}, **values)


# Each pytest-xdist worker gets its own Redis database (gw0: 15, gw1: 14, ...), so counters and
# breakers of tests running at the same time never meet. Pub/sub channels are server-wide: the
# tests that listen on one are marked serial (tests/conftest.py) and run alone.
REDIS_DB = 15 - int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0) % 15
REDIS_URL = os.environ.get("GLASSKEY_TEST_REDIS_URL", f"redis://127.0.0.1:6379/{REDIS_DB}")


def require_redis() -> str:
    """The Redis URL for tests; skipped without a server, except under CI where it fails."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is not reachable at {REDIS_URL} (CI must start it)")
        pytest.skip(f"Redis is not reachable at {REDIS_URL}")
    return REDIS_URL
