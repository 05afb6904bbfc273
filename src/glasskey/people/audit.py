"""The audit log: who did what, when, from where, before → after; append-only and hash-chained.

Every change by anyone (operator, person, CLI, API), every sign-in and its failures, and every
denial is one row of ``audit_events``. Rows are only ever inserted: the database itself refuses an
UPDATE or a DELETE of that table (a trigger on SQLite and on PostgreSQL), and each row carries
``hash = sha256(prev_hash + its own content)``, so ``verify`` finds a row edited or removed by
someone who got around the trigger (all but the very last one, which nothing before it names).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import DDL, Connection, event, select, text

from glasskey.people.tables import audit_events
from glasskey.store.tables import utc_datetime

GENESIS = "0" * 64
PAGE_MAX = 500
_PG_LOCK_ID = 7_017_017  # one advisory lock serialises appends, so the chain never forks

_APPEND_ONLY_SQLITE = [
    "CREATE TRIGGER IF NOT EXISTS audit_events_no_update BEFORE UPDATE ON audit_events "
    "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_events_no_delete BEFORE DELETE ON audit_events "
    "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
]
_APPEND_ONLY_POSTGRESQL = [
    "CREATE OR REPLACE FUNCTION glasskey_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'audit_events is append-only'; END $$",
    "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events "
    "FOR EACH ROW EXECUTE FUNCTION glasskey_audit_append_only()",
]


def append_only_statements(dialect: str) -> list[str]:
    """The DDL that makes the database refuse edits of the log (used by the migration too)."""
    return _APPEND_ONLY_POSTGRESQL if dialect == "postgresql" else _APPEND_ONLY_SQLITE


for _dialect in ("sqlite", "postgresql"):
    for _statement in append_only_statements(_dialect):
        event.listen(audit_events, "after_create", DDL(_statement).execute_if(dialect=_dialect))  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class Actor:
    """Who acts: ``operator`` (the admin token) or a user id, with where the request came from."""

    id: str
    label: str = ""
    address: str = ""
    request_id: str = ""


def _content_hash(prev_hash: str, values: dict[str, Any]) -> str:
    content = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256((prev_hash + content).encode()).hexdigest()


def _hashed_fields(row: Any) -> dict[str, Any]:
    at = utc_datetime(row["at"])
    assert at is not None
    return {
        "at": at.isoformat(),
        "actor": row["actor"],
        "org_id": row["org_id"],
        "action": row["action"],
        "target": row["target"],
        "outcome": row["outcome"],
        "before": row["before"],
        "after": row["after"],
        "address": row["address"],
        "request_id": row["request_id"],
    }


def record(
    conn: Connection,
    actor: Actor,
    action: str,
    now: datetime,
    *,
    org_id: str | None = None,
    target: str = "",
    outcome: str = "ok",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """Append one event in the caller's transaction (a change and its audit row commit together)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK_ID})
    prev_hash = conn.scalar(select(audit_events.c.hash).order_by(audit_events.c.seq.desc()).limit(1)) or GENESIS
    # JSON round trip: what is hashed is exactly what the database will give back.
    values: dict[str, Any] = {
        "at": now,
        "actor": actor.id,
        "org_id": org_id,
        "action": action[:64],
        "target": target[:200],
        "outcome": outcome,
        "before": json.loads(json.dumps(before, default=str)) if before is not None else None,
        "after": json.loads(json.dumps(after, default=str)) if after is not None else None,
        "address": actor.address[:64],
        "request_id": actor.request_id[:40],
    }
    digest = _content_hash(prev_hash, _hashed_fields(values))
    conn.execute(audit_events.insert().values(**values, prev_hash=prev_hash, hash=digest))


def list_events(
    conn: Connection,
    *,
    org_id: str | None = None,
    action: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    before_seq: int | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Events newest first, filtered by org, action, actor (a user id or ``operator``) and time;
    ``org_id`` None means every org (the operator's view)."""
    query = select(audit_events).order_by(audit_events.c.seq.desc()).limit(min(limit, PAGE_MAX))
    if org_id is not None:
        query = query.where(audit_events.c.org_id == org_id)
    if action is not None:
        query = query.where(audit_events.c.action == action)
    if actor is not None:
        query = query.where(audit_events.c.actor == actor)
    if since is not None:
        query = query.where(audit_events.c.at >= since)
    if before_seq is not None:
        query = query.where(audit_events.c.seq < before_seq)
    return [{"seq": row.seq, **_hashed_fields(row._mapping)} for row in conn.execute(query)]


def verify(conn: Connection) -> list[str]:
    """Problems found walking the chain from the first row; empty when the log is intact."""
    problems: list[str] = []
    prev_hash = GENESIS
    for row in conn.execute(select(audit_events).order_by(audit_events.c.seq)):
        if row.prev_hash != prev_hash:
            problems.append(f"event {row.seq}: the event before it was removed or changed")
        if _content_hash(row.prev_hash, _hashed_fields(row._mapping)) != row.hash:
            problems.append(f"event {row.seq}: its content was edited")
        prev_hash = row.hash
    return problems
