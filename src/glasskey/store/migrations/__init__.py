"""Alembic migrations, run from code (no alembic.ini needed): ``upgrade(db)``."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

import glasskey.alerts.tables
import glasskey.research.tables  # noqa: F401  (its tables live on the shared metadata the migrations build)
from glasskey.store.database import Database

HERE = Path(__file__).parent


def alembic_config(db: Database) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    # A percent sign in a password must survive ConfigParser interpolation.
    config.set_main_option("sqlalchemy.url", db.url.replace("%", "%%"))
    config.attributes["glasskey_engine"] = db.engine
    return config


def upgrade(db: Database, revision: str = "heads", *, vault: object | None = None) -> None:
    """Migrate to ``revision``; ``vault`` (a ``routing.credentials.CredentialVault``) lets 0003 seal
    the route credentials of an existing database (without it, the next start seals them)."""
    config = alembic_config(db)
    config.attributes["credential_vault"] = vault
    _forget_ancestor_heads(db, ScriptDirectory.from_config(config))
    command.upgrade(config, revision)


def _forget_ancestor_heads(db: Database, script: ScriptDirectory) -> None:
    """Drop a recorded head that is now an ancestor of another recorded head.

    0003 and 0005 were once two branches, both off 0002, so a database migrated then records two
    heads (0003 and 0004). The chain is one line now (0005 follows 0003), and Alembic refuses to
    upgrade from two heads of which one descends from the other; the descendant says it all.
    """
    with db.engine.begin() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return
        recorded = set(conn.scalars(text("SELECT version_num FROM alembic_version")))
        if len(recorded) < 2:
            return
        ancestors = {
            ancestor.revision
            for head in recorded
            for ancestor in script.iterate_revisions(head, "base")
            if ancestor is not None and ancestor.revision != head
        }
        for stale in recorded & ancestors:
            conn.execute(text("DELETE FROM alembic_version WHERE version_num = :stale"), {"stale": stale})
