"""alerts: the lease on the sweep's evaluation round, so one gateway process evaluates per period

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from glasskey.store.tables import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_sweeps",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=False),
        sa.Column("holder", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_alert_sweeps")),
    )


def downgrade() -> None:
    op.drop_table("alert_sweeps")
