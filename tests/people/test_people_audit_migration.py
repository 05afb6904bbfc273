"""Migration 0012 chains an existing audit log once under the key pepper and writes its head."""

from __future__ import annotations

import hashlib
import json

import pytest
from sqlalchemy import select

from conftest_helpers import NOW, keyed_database
from glasskey.people.audit import GENESIS, Actor, _hashed_fields, list_events, record, verify
from glasskey.people.tables import audit_events, audit_head
from glasskey.store.database import Database
from glasskey.store.migrations import upgrade


def _old_sha256_chain(conn, count: int) -> None:
    """Events as revision 0011 wrote them: a plain sha256 chain and no head."""
    prev_hash = GENESIS
    for index in range(count):
        values = {
            "at": NOW,
            "actor": "operator",
            "org_id": None,
            "action": "signin",
            "target": f"t{index}",
            "outcome": "ok",
            "before": None,
            "after": {"n": index},
            "address": "127.0.0.1",
            "request_id": f"req_{index}",
        }
        content = json.dumps(_hashed_fields(values), sort_keys=True, separators=(",", ":"), default=str)
        digest = hashlib.sha256((prev_hash + content).encode()).hexdigest()
        conn.execute(audit_events.insert().values(**values, prev_hash=prev_hash, hash=digest))
        prev_hash = digest


def test_an_old_log_is_chained_once_under_the_key_and_keeps_its_guard(database_url):
    old = Database(database_url)
    try:
        upgrade(old, "0011")
        with old.write() as conn:
            _old_sha256_chain(conn, 3)
    finally:
        old.dispose()
    db = keyed_database(database_url)
    try:
        upgrade(db)
        with db.read() as conn:
            assert verify(conn) == []
            head = conn.execute(select(audit_head)).one()
            assert head.seq == 3
            assert [event["target"] for event in list_events(conn)] == ["t2", "t1", "t0"]
        with db.write() as conn:
            record(conn, Actor("operator"), "signout", NOW)
        with db.read() as conn:
            assert verify(conn) == []
        with pytest.raises(Exception, match="append-only"), db.write() as conn:
            conn.execute(audit_events.delete())
    finally:
        db.dispose()


def test_an_old_log_is_not_migrated_without_the_key(tmp_path):
    old = Database(f"sqlite:///{tmp_path / 'g.db'}")
    try:
        upgrade(old, "0011")
        with old.write() as conn:
            _old_sha256_chain(conn, 1)
        with pytest.raises(RuntimeError, match="key pepper"):
            upgrade(old)
    finally:
        old.dispose()
