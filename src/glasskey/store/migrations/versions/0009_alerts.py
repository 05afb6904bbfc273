"""alerts: rules per org, wallet and key; the org's webhook (secret sealed); what fires now; deliveries and their log

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import glasskey.store.tables

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", glasskey.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("created_at", glasskey.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", glasskey.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_alert_deliveries_org_id_orgs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_deliveries")),
    )
    with op.batch_alter_table("alert_deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_alert_deliveries_org_id_created_at", ["org_id", "created_at"], unique=False)
        batch_op.create_index("ix_alert_deliveries_status_next_attempt_at", ["status", "next_attempt_at"], unique=False)

    op.create_table(
        "alert_firing",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("alert", sa.String(length=200), nullable=False),
        sa.Column("since", glasskey.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_alert_firing_org_id_orgs")),
        sa.PrimaryKeyConstraint("org_id", "alert", name=op.f("pk_alert_firing")),
    )
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("balance_below_micros", sa.BigInteger(), nullable=True),
        sa.Column("budget_percents", sa.JSON(), nullable=True),
        sa.Column("failure_rate_percent", sa.Integer(), nullable=True),
        sa.Column("failure_window_minutes", sa.Integer(), nullable=True),
        sa.Column("failure_min_requests", sa.Integer(), nullable=True),
        sa.Column("updated_at", glasskey.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_alert_rules_org_id_orgs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_rules")),
        sa.UniqueConstraint("org_id", "kind", "subject", name=op.f("uq_alert_rules_org_id_kind_subject")),
    )
    op.create_table(
        "alert_webhooks",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("secret_sealed", sa.Text(), nullable=False),
        sa.Column("created_at", glasskey.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", glasskey.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_alert_webhooks_org_id_orgs")),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_alert_webhooks")),
    )
    op.create_table(
        "alert_delivery_attempts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.String(length=40), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", glasskey.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("excerpt", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["alert_deliveries.id"],
            name=op.f("fk_alert_delivery_attempts_delivery_id_alert_deliveries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_delivery_attempts")),
    )
    with op.batch_alter_table("alert_delivery_attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_delivery_attempts_delivery_id"), ["delivery_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("alert_delivery_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_delivery_attempts_delivery_id"))

    op.drop_table("alert_delivery_attempts")
    op.drop_table("alert_webhooks")
    op.drop_table("alert_rules")
    op.drop_table("alert_firing")
    with op.batch_alter_table("alert_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_deliveries_status_next_attempt_at")
        batch_op.drop_index("ix_alert_deliveries_org_id_created_at")

    op.drop_table("alert_deliveries")
