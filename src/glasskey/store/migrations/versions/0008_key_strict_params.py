"""key strict params: a key may ask that best-effort parameters a provider cannot honour be refused

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing keys keep today's behaviour: best-effort parameters are dropped and listed, not refused.
    # A plain ADD COLUMN, not a batch: SQLite adds a column with a constant default in place, while a
    # batch would copy and drop api_keys, which the foreign keys of key_spend and others refuse.
    op.add_column("api_keys", sa.Column("strict_params", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    # SQLite drops a column in place since 3.35, with nothing indexing or referencing it.
    op.drop_column("api_keys", "strict_params")
