"""Whether a database's schema is at this code's newest migration, asked without loading Alembic.

Alembic and its migration scripts cost a CLI call more than the query it runs, and a database at
head needs neither: reading the ``alembic_version`` table and comparing it to ``HEAD_REVISION``
says so in one statement. ``HEAD_REVISION`` is written here by hand, so a new migration must move
it; ``tests/store/test_schema.py`` holds it equal to Alembic's own head, so it cannot go stale.
"""

from __future__ import annotations

from sqlalchemy import Connection, inspect, text

from glasskey.store.database import Database

# The newest revision in store/migrations/versions (the one head of the chain).
HEAD_REVISION = "0013"


def recorded_revisions(conn: Connection) -> set[str]:
    """The revisions the database says it is at; none for a database never migrated."""
    if not inspect(conn).has_table("alembic_version"):
        return set()
    return set(conn.scalars(text("SELECT version_num FROM alembic_version")))


def at_head(db: Database) -> bool:
    """Whether ``db`` is migrated exactly to this code's head (not behind it, and not two heads)."""
    with db.read() as conn:
        return recorded_revisions(conn) == {HEAD_REVISION}
