"""stream_progress: what a stream in flight had forwarded, recorded about once a second

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from glasskey.store.tables import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stream_progress",
        sa.Column("transfer_id", sa.String(length=40), nullable=False),
        sa.Column("route_id", sa.String(length=40), nullable=False),
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("upstream_model", sa.String(length=200), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cached_tokens", sa.BigInteger(), nullable=False),
        sa.Column("usage_source", sa.String(length=32), nullable=False),
        sa.Column("input_price_per_mtok_micros", sa.BigInteger(), nullable=False),
        sa.Column("output_price_per_mtok_micros", sa.BigInteger(), nullable=False),
        sa.Column("cached_price_per_mtok_micros", sa.BigInteger(), nullable=False),
        sa.Column("charge_micros", sa.BigInteger(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("transfer_id", name=op.f("pk_stream_progress")),
    )


def downgrade() -> None:
    op.drop_table("stream_progress")
