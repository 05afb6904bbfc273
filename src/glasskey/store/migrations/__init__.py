"""Alembic migrations, run from code (no alembic.ini needed): ``upgrade(db)``."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

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
    """Migrate to ``revision`` (every head: independent branches, such as 0003 and 0005, both apply);
    ``vault`` (a ``routing.credentials.CredentialVault``) lets 0003 seal the route credentials of an
    existing database (without it, the next start seals them)."""
    config = alembic_config(db)
    config.attributes["credential_vault"] = vault
    command.upgrade(config, revision)
