"""The Alembic migrations build exactly the schema the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from glasskey.store.database import Database
from glasskey.store.migrations import upgrade
from glasskey.store.tables import metadata


def test_migrations_match_the_declared_tables(database_url):
    db = Database(database_url)
    try:
        upgrade(db)
        upgrade(db)  # a second upgrade is a no-op
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
            tables = set(inspect(conn).get_table_names())
        assert diff == []
        assert {"accounts", "transfers", "receipts", "api_keys", "routes", "models", "orgs", "key_spend"} <= tables
    finally:
        db.dispose()
