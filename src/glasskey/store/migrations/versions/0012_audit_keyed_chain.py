"""audit: the chain becomes an HMAC under a key derived from the key pepper, with a MAC'd head

Existing events are chained once under the key (the append-only trigger is lifted for that
statement only), and ``audit_head`` records the newest event, so removing trailing events and
rewriting the log with recomputed plain hashes are both found by ``glasskey audit verify``.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from glasskey.people.audit import CHAIN_KEY_OPTION, append_only_statements, rechain

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("mac", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    op.create_index("ix_audit_events_request_id", "audit_events", ["request_id"], unique=False)
    conn = op.get_bind()
    key = conn.get_execution_options().get(CHAIN_KEY_OPTION)
    has_events = conn.execute(sa.text("SELECT 1 FROM audit_events LIMIT 1")).first() is not None
    if not isinstance(key, bytes):
        if has_events:
            raise RuntimeError("migration 0012 chains the audit log under the key pepper: run it through glasskey")
        return  # an empty log: the first event writes the head
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(sa.text("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only"))
    else:
        conn.execute(sa.text("DROP TRIGGER IF EXISTS audit_events_no_update"))
        conn.execute(sa.text("DROP TRIGGER IF EXISTS audit_events_no_delete"))
    rechain(conn, key)
    if dialect == "postgresql":
        conn.execute(sa.text("ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only"))
    else:
        for statement in append_only_statements("sqlite"):
            conn.execute(sa.text(statement))


def downgrade() -> None:
    op.drop_index("ix_audit_events_request_id", table_name="audit_events")
    op.drop_table("audit_head")
