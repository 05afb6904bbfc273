"""Shared fixtures: a fresh database on SQLite and on PostgreSQL, and built services."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conftest_helpers import NOW, POSTGRES_URL, keyed_database, make_settings, postgres_schema_url, require_postgres
from glasskey.ledger import ensure_system_accounts
from glasskey.pricing.catalog import sync_catalog
from glasskey.services import Services, build_services
from glasskey.store.database import Database

__all__ = ["NOW", "POSTGRES_URL", "make_settings", "postgres_schema_url", "require_postgres"]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """The URL of an empty database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'glasskey.db'}"
    else:
        yield from postgres_schema_url()


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A database with every table, the system accounts and the catalog, on both engines."""
    database = keyed_database(database_url)
    database.create_all()
    with database.write() as conn:
        ensure_system_accounts(conn, NOW)
        sync_catalog(conn)
    yield database
    database.dispose()


@pytest.fixture
def sqlite_db(tmp_path) -> Iterator[Database]:
    database = keyed_database(f"sqlite:///{tmp_path / 'glasskey.db'}")
    database.create_all()
    with database.write() as conn:
        ensure_system_accounts(conn, NOW)
        sync_catalog(conn)
    yield database
    database.dispose()


@pytest.fixture
def services(tmp_path) -> Iterator[Services]:
    built = build_services(make_settings(tmp_path))
    yield built
    built.db.dispose()


# `make test` runs the suite on two pytest-xdist workers, then the tests below alone
# (`-m serial`): they start several gateway processes, flood them or kill them, and assert what
# happens within a second or two, which a second worker's load on this 2-core machine would blur.
# They also listen on Redis's pub/sub channels, which are server-wide (databases are per worker).
SERIAL_TESTS = (
    "tests/scale/",
    "tests/hostile/",
    "tests/gateway/test_crash_",
    "tests/research/test_research_resume.py",
    "tests/test_invalidation.py",
    "tests/cli/test_cli_admin_path.py",
    # A WAL size bound that the checkpointer keeps only when it is not starved of CPU.
    "tests/store/test_writer.py::test_on_sqlite_the_wal_starts_over",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.startswith(SERIAL_TESTS):
            item.add_marker(pytest.mark.serial)
