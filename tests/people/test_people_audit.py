"""The audit log: append-only in the database itself, HMAC-chained to a MAC'd head so an edit, a removal
(anywhere, the end too) or a rewrite with recomputed hashes is found."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError

from conftest_helpers import NOW
from glasskey.people.audit import GENESIS, Actor, _hashed_fields, list_events, record, verify
from glasskey.people.tables import audit_events, audit_head
from glasskey.store.database import Database

ALICE = Actor("usr_alice", "alice@example.com", "198.51.100.7", "req_1")


def _three_events(db):
    with db.write() as conn:
        record(conn, ALICE, "signin", NOW, target="alice@example.com")
        record(conn, ALICE, "key.create", NOW + timedelta(seconds=1), org_id="org_a", target="gk-abc", after={"rpm": 5})
        record(
            conn, ALICE, "denied", NOW + timedelta(seconds=2), org_id="org_a", outcome="denied", after={"status": 403}
        )


def test_events_read_back_newest_first_with_who_what_where(db):
    _three_events(db)
    with db.read() as conn:
        events = list_events(conn)
        org_events = list_events(conn, org_id="org_a", action="key.create")
        assert verify(conn) == []
    assert [event["action"] for event in events] == ["denied", "key.create", "signin"]
    assert org_events[0]["after"] == {"rpm": 5} and org_events[0]["address"] == "198.51.100.7"
    assert org_events[0]["request_id"] == "req_1" and org_events[0]["actor"] == "usr_alice"
    with db.read() as conn:
        assert list_events(conn, actor="usr_bob") == []
        recent = list_events(conn, actor="usr_alice", since=NOW + timedelta(seconds=1))
    assert [event["action"] for event in recent] == ["denied", "key.create"]


@pytest.mark.parametrize("statement", ["update", "delete"])
def test_the_database_refuses_to_change_or_remove_an_event(db, statement):
    _three_events(db)
    with pytest.raises(DBAPIError, match="append-only"), db.write() as conn:
        if statement == "update":
            conn.execute(update(audit_events).values(outcome="ok"))
        else:
            conn.execute(audit_events.delete())


def _drop_guard(conn):
    if conn.dialect.name == "postgresql":
        conn.execute(text("DROP TRIGGER audit_events_append_only ON audit_events"))
    else:
        conn.execute(text("DROP TRIGGER audit_events_no_update"))
        conn.execute(text("DROP TRIGGER audit_events_no_delete"))


def test_verify_finds_an_edited_event_even_past_the_trigger(db):
    _three_events(db)
    with db.write() as conn:
        _drop_guard(conn)
        conn.execute(update(audit_events).where(audit_events.c.action == "denied").values(outcome="ok"))
    with db.read() as conn:
        assert verify(conn) == ["event 3: its content or hash was edited (not signed with this server's key)"]


def test_verify_finds_a_removed_event(db):
    _three_events(db)
    with db.write() as conn:
        _drop_guard(conn)
        conn.execute(audit_events.delete().where(audit_events.c.action == "key.create"))
    with db.read() as conn:
        assert verify(conn) == ["event 3: the event before it was removed or changed"]


def _five_events(db):
    _three_events(db)
    with db.write() as conn:
        record(conn, ALICE, "key.revoke", NOW + timedelta(seconds=3), org_id="org_a", target="key_1")
        record(conn, ALICE, "signout", NOW + timedelta(seconds=4), target="alice@example.com")


def test_verify_finds_trailing_events_removed(db):
    _five_events(db)
    with db.write() as conn:
        _drop_guard(conn)
        conn.execute(audit_events.delete().where(audit_events.c.seq > 2))
    with db.read() as conn:
        assert verify(conn) == ["the head names event 5, the last one is 2: events were removed from the end"]
    # The next event chains on the head, so the gap stays visible after more appends.
    with db.write() as conn:
        record(conn, ALICE, "signin", NOW + timedelta(seconds=5))
    with db.read() as conn:
        newest = list_events(conn, limit=1)[0]["seq"]  # SQLite reuses the removed numbers, PostgreSQL does not
        assert verify(conn) == [f"event {newest}: the event before it was removed or changed"]


def test_verify_finds_the_head_pointed_back_at_a_remaining_event(db):
    _five_events(db)
    with db.write() as conn:
        _drop_guard(conn)
        conn.execute(audit_events.delete().where(audit_events.c.seq > 2))
        second = conn.execute(select(audit_events.c.hash).where(audit_events.c.seq == 2)).scalar_one()
        conn.execute(update(audit_head).values(seq=2, hash=second))
    with db.read() as conn:
        assert verify(conn) == ["the head record was edited (not signed with this server's key)"]


def test_verify_finds_the_whole_log_removed_with_its_head_left(db):
    _five_events(db)
    with db.write() as conn:
        _drop_guard(conn)
        conn.execute(audit_events.delete())
    with db.read() as conn:
        assert verify(conn) == ["the head names event 5, the last one is 0: events were removed from the end"]


def test_verify_finds_a_rewrite_with_recomputed_plain_hashes(db):
    """An attacker without the key pepper rewrites every event and the head with sha256 chains."""
    _five_events(db)
    with db.write() as conn:
        _drop_guard(conn)
        prev_hash = GENESIS
        for row in conn.execute(select(audit_events).order_by(audit_events.c.seq)).all():
            fields = _hashed_fields(row._mapping)
            fields["outcome"] = "ok"
            content = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
            digest = hashlib.sha256((prev_hash + content).encode()).hexdigest()
            conn.execute(
                update(audit_events)
                .where(audit_events.c.seq == row.seq)
                .values(outcome="ok", prev_hash=prev_hash, hash=digest)
            )
            prev_hash = digest
        head_mac = hashlib.sha256(f"audit head:5:{prev_hash}".encode()).hexdigest()
        conn.execute(update(audit_head).values(seq=5, hash=prev_hash, mac=head_mac))
    with db.read() as conn:
        problems = verify(conn)
    assert [p for p in problems if "not signed with this server's key" in p] == [
        *(f"event {seq}: its content or hash was edited (not signed with this server's key)" for seq in range(1, 6)),
        "the head record was edited (not signed with this server's key)",
    ]


def test_a_log_checked_under_another_key_is_not_intact(db):
    _three_events(db)
    other = Database(db.url, audit_chain_key=b"another server's key")
    try:
        with other.read() as conn:
            assert len(verify(conn)) == 4  # three events and the head
    finally:
        other.dispose()


def test_concurrent_appends_never_fork_the_chain(db):
    def append(worker: int) -> None:
        for index in range(15):
            with db.write() as conn:
                record(conn, Actor(f"usr_{worker}"), "signin", NOW + timedelta(milliseconds=index), target=str(index))

    threads = [threading.Thread(target=append, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with db.read() as conn:
        assert len(list_events(conn, limit=500)) == 60
        assert verify(conn) == []
