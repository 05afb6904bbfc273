"""The PostgreSQL pool of a gateway process is sized by its settings (docs/deployment.md: fit max_connections)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text
from sqlalchemy.pool import QueuePool

from conftest_helpers import make_settings, postgres_schema_url, require_postgres
from glasskey.services import build_services
from glasskey.settings import load_settings

SECRETS = {
    "GLASSKEY_ADMIN_TOKEN": "admin-token-for-tests-0123456789",
    "GLASSKEY_KEY_PEPPER": "pepper-for-tests-0123456789abcdef",
    "GLASSKEY_ENCRYPTION_KEY": "dGVzdC1lbmNyeXB0aW9uLWtleS0wMTIzNDU2Nzg5YWI=",
}


def test_the_pool_settings_are_read_from_the_environment_with_defaults_of_10_and_20() -> None:
    defaults = load_settings(environ=SECRETS)
    assert (defaults.database_pool_size, defaults.database_pool_overflow) == (10, 20)
    settings = load_settings(
        environ={**SECRETS, "GLASSKEY_DATABASE_POOL_SIZE": "3", "GLASSKEY_DATABASE_POOL_OVERFLOW": "0"}
    )
    assert (settings.database_pool_size, settings.database_pool_overflow) == (3, 0)


def test_a_gateway_on_postgresql_keeps_at_most_the_connections_its_settings_allow(tmp_path: Path) -> None:
    require_postgres()
    for url in postgres_schema_url():
        services = build_services(
            make_settings(tmp_path, database_url=url, database_pool_size=2, database_pool_overflow=1)
        )
        try:
            pool = services.db.engine.pool
            assert isinstance(pool, QueuePool)
            assert pool.size() == 2
            # Three connections at once are allowed (2 + 1 overflow), and they are real backends.
            held = [services.db.engine.connect() for _ in range(3)]
            pids = {conn.execute(text("select pg_backend_pid()")).scalar() for conn in held}
            assert len(pids) == 3
            assert pool.checkedout() == 3
            assert pool.overflow() == 1  # SQLAlchemy counts the connections opened past the pool
            for conn in held:
                conn.close()
            assert pool.checkedin() == 2  # the overflow connection was closed, not kept
        finally:
            services.close()
