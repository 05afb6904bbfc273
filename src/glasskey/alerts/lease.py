"""The lease on the sweep's evaluation round: of many gateway processes, one evaluates per period.

Every ``glasskey serve`` process (and each of ``--workers N``) runs the alerts sweep; without a
lease, each would evaluate every org once per period. The round is one row of ``alert_sweeps``
whose ``due_at`` says when the next round may start. A process takes the round with one conditional
``UPDATE … WHERE due_at <= now``, moving ``due_at`` to the end of its lease: on PostgreSQL a second
process's UPDATE waits for the first's row lock, then finds the condition false, so exactly one takes
it (on SQLite the write lock does the same). When the round ends, its holder sets ``due_at`` one
period ahead. A holder that dies mid-round holds the round no longer than ``LEASE_SECONDS``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects import postgresql, sqlite

from glasskey.alerts.tables import alert_sweeps

EVALUATION = "evaluate"
# A bound on a round, after which a holder that died is presumed gone and another may take it.
LEASE_SECONDS = 300


def is_due(conn: Connection, now: datetime) -> bool:
    """Whether the round may be taken now: a read, so a process asks every tick without a write lock."""
    due_at = conn.scalar(select(alert_sweeps.c.due_at).where(alert_sweeps.c.name == EVALUATION))
    return due_at is None or due_at <= now


def take(conn: Connection, holder: str, now: datetime) -> bool:
    """Take the round for ``holder`` until ``now + LEASE_SECONDS``; False when another has it or had it
    this period."""
    lease_end = now + timedelta(seconds=LEASE_SECONDS)
    taken = conn.execute(
        update(alert_sweeps)
        .where(alert_sweeps.c.name == EVALUATION)
        .where(alert_sweeps.c.due_at <= now)
        .values(due_at=lease_end, holder=holder)
    )
    if taken.rowcount == 1:
        return True
    # The first round ever: whoever inserts the row has it (RETURNING says whether this insert went in).
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(alert_sweeps)
        .values(name=EVALUATION, due_at=lease_end, holder=holder)
        .on_conflict_do_nothing()
        .returning(alert_sweeps.c.name)
    )
    return conn.scalar(statement) is not None


def give_back(conn: Connection, holder: str, next_due_at: datetime) -> None:
    """End ``holder``'s round: the next may start at ``next_due_at``. A no-op when the lease ran out and
    another process has the round now."""
    conn.execute(
        update(alert_sweeps)
        .where(alert_sweeps.c.name == EVALUATION)
        .where(alert_sweeps.c.holder == holder)
        .values(due_at=next_due_at)
    )
