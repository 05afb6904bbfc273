"""research resume: who runs a job (a claim by instance id), its resumes, and kept answers

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from glasskey.store.tables import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kept_answers",
        sa.Column("request_id", sa.String(length=40), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_kept_answers")),
    )
    with op.batch_alter_table("research_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("runner_instance_id", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("resumed_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("resumed_by", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("resume_count", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("research_jobs", schema=None) as batch_op:
        batch_op.drop_column("resume_count")
        batch_op.drop_column("resumed_by")
        batch_op.drop_column("resumed_at")
        batch_op.drop_column("runner_instance_id")
    op.drop_table("kept_answers")
