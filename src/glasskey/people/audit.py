"""The audit log: who did what, when, from where, before → after; append-only and hash-chained.

Every change by anyone (operator, person, CLI, API), every sign-in and its failures, and every
denial is one row of ``audit_events``. Rows are only ever inserted: the database itself refuses an
UPDATE or a DELETE of that table (a trigger on SQLite and on PostgreSQL). Each row carries
``hash = HMAC(chain key, prev_hash + its own content)``, the chain key derived from the server's
key pepper (never stored in the database), and ``audit_head`` holds the newest row's sequence
number and hash under a MAC, updated in the same transaction as each append. So ``verify`` finds,
without anyone trusting the database, a row edited, a row removed anywhere (trailing ones too: the
head names a row that is gone) and a log rewritten with recomputed hashes (they are not MACs under
the chain key). What it cannot see: someone holding both the database and the key pepper can
rewrite everything consistently, and a whole database restored from an older copy (head included)
is an older, intact log.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import DDL, Connection, event, select, text

from glasskey.errors import GatewayError
from glasskey.people.tables import audit_events, audit_head
from glasskey.store.database import AUDIT_CHAIN_KEY_OPTION
from glasskey.store.tables import utc_datetime

GENESIS = "0" * 64
# The execution option (set on the engine by ``Database``) that carries the chain key to ``record``
# and ``verify``: every connection of a configured database has it, and no module holds it.
CHAIN_KEY_OPTION = AUDIT_CHAIN_KEY_OPTION
HEAD_ID = 1
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


def chain_key(key_pepper: str) -> bytes:
    """The audit chain's MAC key, derived from the key pepper (a secret that is never in the
    database and never rotated: changing it would also break every API key)."""
    return hmac.new(key_pepper.encode(), b"glasskey audit chain v1", hashlib.sha256).digest()


def chain_key_of(conn: Connection) -> bytes:
    key = conn.get_execution_options().get(CHAIN_KEY_OPTION)
    if not isinstance(key, bytes) or not key:
        raise GatewayError("the audit log's chain key is not configured on this database", code="audit_key_missing")
    return key


def _content_hash(key: bytes, prev_hash: str, values: dict[str, Any]) -> str:
    content = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
    return hmac.new(key, (prev_hash + content).encode(), hashlib.sha256).hexdigest()


def _head_mac(key: bytes, seq: int, digest: str) -> str:
    return hmac.new(key, f"audit head:{seq}:{digest}".encode(), hashlib.sha256).hexdigest()


def write_head(conn: Connection, key: bytes, seq: int, digest: str) -> None:
    """Point the head at the newest event (in the caller's transaction, under the append lock)."""
    values = {"seq": seq, "hash": digest, "mac": _head_mac(key, seq, digest)}
    updated = conn.execute(audit_head.update().where(audit_head.c.id == HEAD_ID).values(**values))
    if updated.rowcount == 0:
        conn.execute(audit_head.insert().values(id=HEAD_ID, **values))


def rechain(conn: Connection, key: bytes) -> int:
    """Recompute every event's prev_hash and hash under ``key`` and write the head; the caller has
    lifted the append-only trigger (the migration that introduced the keyed chain does). Returns
    how many events were chained."""
    prev_hash = GENESIS
    last_seq = 0
    for row in conn.execute(select(audit_events).order_by(audit_events.c.seq)).all():
        digest = _content_hash(key, prev_hash, _hashed_fields(row._mapping))
        conn.execute(
            audit_events.update().where(audit_events.c.seq == row.seq).values(prev_hash=prev_hash, hash=digest)
        )
        prev_hash, last_seq = digest, row.seq
    write_head(conn, key, last_seq, prev_hash)
    return last_seq


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
    key = chain_key_of(conn)
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK_ID})
    # Chained on the head, not on the last row: after trailing rows were removed, the next event
    # still names the hash of the removed newest one, so the gap stays visible.
    prev_hash = conn.scalar(select(audit_head.c.hash).where(audit_head.c.id == HEAD_ID)) or GENESIS
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
    digest = _content_hash(key, prev_hash, _hashed_fields(values))
    inserted = conn.execute(audit_events.insert().values(**values, prev_hash=prev_hash, hash=digest))
    primary_key = inserted.inserted_primary_key
    assert primary_key is not None
    write_head(conn, key, int(primary_key[0]), digest)


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
    """Problems found walking the chain from the first row to the head; empty when the log is intact."""
    key = chain_key_of(conn)
    problems: list[str] = []
    prev_hash = GENESIS
    last_seq = 0
    for row in conn.execute(select(audit_events).order_by(audit_events.c.seq)):
        if row.prev_hash != prev_hash:
            problems.append(f"event {row.seq}: the event before it was removed or changed")
        if not hmac.compare_digest(_content_hash(key, row.prev_hash, _hashed_fields(row._mapping)), row.hash):
            problems.append(f"event {row.seq}: its content or hash was edited (not signed with this server's key)")
        prev_hash, last_seq = row.hash, row.seq
    head = conn.execute(select(audit_head).where(audit_head.c.id == HEAD_ID)).first()
    if head is None:
        if last_seq:
            problems.append("the head record is missing: events may have been removed from the end")
        return problems
    if not hmac.compare_digest(_head_mac(key, head.seq, head.hash), head.mac):
        problems.append("the head record was edited (not signed with this server's key)")
    elif head.seq != last_seq or head.hash != prev_hash:
        problems.append(
            f"the head names event {head.seq}, the last one is {last_seq}: events were removed from the end"
        )
    return problems
