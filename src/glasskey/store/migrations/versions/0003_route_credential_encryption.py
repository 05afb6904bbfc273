"""route credential encryption

Revision ID: 0003
Revises: 0002

Seals every route credential stored in plaintext (``routing.credentials``). The key is a setting
that is never in the database, so the migration receives the vault from the code that runs it
(``store.migrations.upgrade(db, vault=...)``, as ``build_services`` and ``glasskey db upgrade``
do). Run without one (Alembic's own command line), it changes nothing: the next start of glasskey
seals the rows instead (``routing.stored_checks``), before any request is served. No column
changes: a sealed credential is text in the same ``credential`` column.

Downgrading opens the credentials back to plaintext, which needs the vault too; without it the
downgrade refuses, because revision 0002's code would send the sealed text upstream as a key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SEALED_PREFIX = "sealed:v1:"
_routes = sa.table("routes", sa.column("id", sa.String), sa.column("credential", sa.Text))


def _vault() -> Any:
    return context.config.attributes.get("credential_vault")


def _rewrite(convert: Callable[[str], str | None], wanted: bool) -> None:
    """Rewrite each credential whose sealed state is ``not wanted`` with ``convert``."""
    conn = op.get_bind()
    rows = conn.execute(sa.select(_routes.c.id, _routes.c.credential).where(_routes.c.credential.is_not(None)))
    for route_id, credential in rows.all():
        if credential.startswith(SEALED_PREFIX) != wanted:
            conn.execute(_routes.update().where(_routes.c.id == route_id).values(credential=convert(credential)))


def upgrade() -> None:
    vault = _vault()
    if vault is not None:
        _rewrite(vault.seal, wanted=True)


def downgrade() -> None:
    vault = _vault()
    if vault is None:
        sealed = op.get_bind().scalar(
            sa.select(sa.func.count()).select_from(_routes).where(_routes.c.credential.like(SEALED_PREFIX + "%"))
        )
        if sealed:
            raise RuntimeError("downgrading below 0003 opens sealed route credentials: run it with the vault")
        return
    _rewrite(vault.open, wanted=False)
