"""What the CLI's admin verbs need, and nothing more: the settings, the database, the vault, a clock.

The gateway's ``Services`` (``services.py``) bring the providers and their upstream client
(aiohttp), the Redis clients, the writer, the metrics and the migrations; an admin verb uses none of
them, and importing them was most of what a ``glasskey keys list`` cost (bench/cli_startup.py).
Here a database whose schema is at head (``store.schema``: one query, no Alembic) is used as it
is; one that is not is migrated and prepared as the gateway's start-up does (``startup``), which
is the only time this path loads Alembic.

A change a verb commits is announced to running gateways through Redis when it is configured
(``announce``), as the admin API's changes are, so a revoked key is refused everywhere at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from glasskey.data_dir import prepare_data_dir
from glasskey.people.audit import chain_key
from glasskey.routing.credentials import CredentialVault
from glasskey.settings import Settings
from glasskey.store.database import Database
from glasskey.store.schema import at_head


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class AdminServices:
    """One CLI call's services; the verbs read ``settings``, ``db``, ``vault``, ``clock`` and ``pepper``."""

    settings: Settings
    db: Database
    clock: Callable[[], datetime] = utc_now
    vault: CredentialVault = field(init=False)

    def __post_init__(self) -> None:
        self.vault = CredentialVault(self.settings.encryption_keys)

    @property
    def pepper(self) -> str:
        return self.settings.key_pepper.get_secret_value()

    def announce(self, what: str) -> bool:
        """Tell every running gateway that something they may cache changed (Redis pub/sub).

        Returns False only when Redis is configured and the message could not be sent; without
        Redis there is no one to tell, and gateways see the change within their cache TTL."""
        if not self.settings.redis_url:
            return True
        # Redis' client is loaded only by a change, and only when Redis is configured.
        from glasskey.invalidation import announce_once

        return announce_once(self.settings.redis_url, what)


def open_admin(settings: Settings) -> AdminServices:
    """Open the database for an admin verb, migrating and preparing it first only if it is not at head."""
    if not settings.database_url:
        prepare_data_dir(settings.data_dir, create_database=True)
    admin = AdminServices(
        settings,
        Database(settings.effective_database_url, audit_chain_key=chain_key(settings.key_pepper.get_secret_value())),
    )
    if not at_head(admin.db):
        # Alembic and the migration scripts, only when there is something to migrate.
        from glasskey.startup import prepare_database

        prepare_database(admin.db, admin.vault, admin.clock(), allow_private=settings.allow_private_upstreams)
    return admin
