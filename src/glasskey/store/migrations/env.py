"""Alembic environment: runs migrations on the engine glasskey already built."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

import glasskey.alerts.tables
import glasskey.people.tables
import glasskey.research.tables  # noqa: F401  (registers the research tables on metadata)
from glasskey.store.tables import metadata

config = context.config
engine = config.attributes.get("glasskey_engine") or create_engine(config.get_main_option("sqlalchemy.url") or "")

with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
