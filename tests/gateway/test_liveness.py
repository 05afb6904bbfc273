"""PostgreSQL liveness locks (``gateway.liveness``): a dead process is told by its free lock, at once.

The end-to-end story (a process killed with SIGKILL, a running one voiding its holds within two
seconds) is ``test_crash_liveness.py``; these drive the locks and the watch directly.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select, text

from conftest_helpers import NOW
from gateway.test_instances import held_by
from glasskey.gateway import instances, liveness
from glasskey.ledger import audit, get_transfer
from glasskey.store import tables
from glasskey.store.database import Database
from glasskey.store.tables import receipts

# PostgreSQL only: the conftest's database of every table, on its PostgreSQL side.
on_postgresql = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@on_postgresql
def test_a_held_lock_is_not_free_and_is_free_once_its_holder_is_gone(db: Database):
    alive, gone, watcher = (liveness.LivenessLock(db, name) for name in ("inst_alive", "inst_gone", "inst_watch"))
    for lock in (alive, gone, watcher):
        assert lock.hold() is True
        assert lock.hold() is False  # held already: nothing to take
    gone.release()  # as a killed process's connection closes
    # The server ends the session (and frees its lock) a moment after the client hung up.
    assert _free_soon(watcher, ["inst_alive", "inst_gone"]) == {"inst_gone"}
    assert watcher.free(["inst_alive", "inst_gone"]) == {"inst_gone"}  # the probe gave the lock back
    alive.release()
    watcher.release()


@on_postgresql
def test_a_lock_whose_connection_dropped_is_taken_again_at_the_next_check(db: Database):
    holder, watcher = liveness.LivenessLock(db, "inst_holder"), liveness.LivenessLock(db, "inst_watch")
    holder.hold()
    watcher.hold()
    assert holder._conn is not None
    backend = holder._conn.scalar(text("SELECT pg_backend_pid()"))
    with db.read() as conn:  # PostgreSQL ends the holder's session, as a restart or a cut would
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
    assert _free_soon(watcher, ["inst_holder"]) == {"inst_holder"}
    assert holder.hold() is True  # taken again on a new connection
    assert watcher.free(["inst_holder"]) == set()
    holder.release()
    watcher.release()


def test_a_running_process_takes_another_for_dead_only_when_its_lock_stays_free():
    watch = liveness.Watch(free_for_seconds=1.0)
    assert watch.dead({"a", "b"}, 100.0) == set()  # first sighting
    assert watch.dead({"a"}, 100.5) == set()  # "b" took its lock again: forgotten
    assert watch.dead({"a", "b"}, 101.0) == {"a"}  # "a" free for a second; "b" seen free anew
    assert watch.dead({"a", "b"}, 102.0) == {"a", "b"}


@on_postgresql
def test_the_holds_of_an_instance_whose_lock_is_free_are_voided_by_the_check_with_receipts(db: Database):
    held, _, _ = held_by(db, "inst_dead")
    dead, live, me = (liveness.LivenessLock(db, name) for name in ("inst_dead", "inst_live", "inst_me"))
    for name in ("inst_dead", "inst_live"):
        with db.write() as conn:
            instances.register(conn, name, NOW)  # beating now: the heartbeats alone say alive
    dead.hold()
    live.hold()
    assert liveness.start(db, me, "inst_me", NOW) == 0  # both locks held
    dead.release()  # killed
    assert _free_soon(me, ["inst_dead"]) == {"inst_dead"}
    watch = liveness.Watch()
    assert liveness.check(db, me, watch, "inst_me", NOW, 10.0) == liveness.Verdict(frozenset(), 0)  # free once: not yet
    # Free a second later: dead, named in the verdict (which wakes the research resume round).
    assert liveness.check(db, me, watch, "inst_me", NOW, 11.0) == liveness.Verdict(frozenset({"inst_dead"}), 1)
    with db.read() as conn:
        assert get_transfer(conn, held.transfer_id).status == "voided"
        assert set(conn.scalars(select(tables.instances.c.id))) == {"inst_live", "inst_me"}  # the dead one left
        receipt = conn.execute(select(receipts).where(receipts.c.transfer_id == held.transfer_id)).one()
        assert (receipt.status, receipt.charge_micros, receipt.error_code) == ("interrupted", 0, "interrupted")
        assert audit(conn).ok
    assert liveness.check(db, me, watch, "inst_me", NOW, 12.0) == liveness.Verdict(frozenset(), 0)  # once
    for lock in (live, me):
        lock.release()


@on_postgresql
def test_at_start_up_one_sighting_of_a_free_lock_is_enough(db: Database):
    held, _, _ = held_by(db, "inst_killed")
    with db.write() as conn:
        instances.register(conn, "inst_killed", NOW)  # its last beat was just now; its lock is free
    restarted = liveness.LivenessLock(db, "inst_restarted")
    assert liveness.start(db, restarted, "inst_restarted", NOW) == 1
    with db.read() as conn:
        assert get_transfer(conn, held.transfer_id).status == "voided"
    restarted.release()


def _free_soon(watcher: liveness.LivenessLock, instance_ids: list[str]) -> set[str]:
    """What ``watcher`` finds free once something is (within 5 s), as its one-second checks would."""
    deadline = time.monotonic() + 5
    while not (free := watcher.free(instance_ids)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return free


@on_postgresql
def test_a_lock_an_old_session_still_holds_is_not_waited_for_and_is_taken_once_free(db: Database):
    old_session, new_session = liveness.LivenessLock(db, "inst_cut"), liveness.LivenessLock(db, "inst_cut")
    assert old_session.hold() is True
    assert new_session.hold() is False  # at once, not blocked: to the others the process still looks alive
    old_session.release()  # the server ends the old session at last
    deadline = time.monotonic() + 5
    while not new_session.hold() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert new_session.hold() is False  # held now, by the new session: nothing more to take
    watcher = liveness.LivenessLock(db, "inst_watch")
    watcher.hold()
    assert watcher.free(["inst_cut"]) == set()
    for lock in (new_session, watcher):
        lock.release()
