"""The audit log: append-only in the database itself, hash-chained so an edit or removal is found."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import text, update
from sqlalchemy.exc import DBAPIError

from conftest_helpers import NOW
from glasskey.people.audit import Actor, list_events, record, verify
from glasskey.people.tables import audit_events

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
        assert verify(conn) == ["event 3: its content was edited"]


def test_verify_finds_a_removed_event(db):
    _three_events(db)
    with db.write() as conn:
        _drop_guard(conn)
        conn.execute(audit_events.delete().where(audit_events.c.action == "key.create"))
    with db.read() as conn:
        assert verify(conn) == ["event 3: the event before it was removed or changed"]


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
