"""What a process does to a database before it uses it: schema, system accounts, catalog, credentials.

The gateway does it at every start (``services.build_services``). The CLI's admin verbs do it only
when the schema is not at head (``cli.context``): a database at head has been through it once, and
doing it again would cost every ``glasskey keys list`` Alembic and a write transaction.
"""

from __future__ import annotations

from datetime import datetime

from glasskey.ledger import ensure_system_accounts
from glasskey.pricing.catalog import sync_catalog
from glasskey.routing.credentials import CredentialVault
from glasskey.routing.stored_checks import check_stored_routes
from glasskey.store.database import Database
from glasskey.store.migrations import upgrade


def prepare_database(
    db: Database, vault: CredentialVault, now: datetime, *, allow_private: bool, migrate: bool = True
) -> None:
    """Migrate to head (unless ``migrate`` is False), open the system accounts, insert or refresh the
    shipped model catalog, and seal stored route credentials (refused upstreams are reported)."""
    if migrate:
        upgrade(db, vault=vault)
    with db.write() as conn:
        ensure_system_accounts(conn, now)
        sync_catalog(conn)
        check_stored_routes(conn, vault, allow_private=allow_private)
