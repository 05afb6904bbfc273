"""Group commit: many writes share a transaction, each fails alone, and none is answered before its commit."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
from sqlalchemy import Connection, func, select

from conftest_helpers import NOW
from glasskey.errors import WalletError
from glasskey.metrics import Metrics
from glasskey.routing.health import HealthBoard
from glasskey.store import deferred
from glasskey.store.database import Database
from glasskey.store.driver import DriverStatement
from glasskey.store.tables import UTCDateTime, orgs
from glasskey.store.writer import GroupCommitWriter, Later


def insert_org(name: str) -> Callable[[Connection], str]:
    def work(conn: Connection) -> str:
        conn.execute(orgs.insert().values(id=name, name=name, created_at=NOW))
        return name

    return work


def refuse_cleanly(conn: Connection) -> None:
    raise WalletError("refused before writing anything")


def refuse(conn: Connection) -> None:
    conn.execute(orgs.insert().values(id="doomed", name="doomed", created_at=NOW))
    raise WalletError("refused on purpose")


def count(db: Database) -> int:
    with db.read() as conn:
        return int(conn.scalar(select(func.count()).select_from(orgs)) or 0)


def test_concurrent_writes_are_batched_and_each_is_committed_before_it_is_answered(db):
    writer = GroupCommitWriter(db)
    seen_at_answer: list[int] = []

    async def one(index: int) -> str:
        name = await writer.submit(insert_org(f"org-{index}"))
        seen_at_answer.append(count(db))  # another connection already sees the committed row
        return name

    async def run() -> list[str]:
        return await asyncio.gather(*(one(i) for i in range(300)))

    try:
        names = asyncio.run(run())
    finally:
        writer.close()
    assert sorted(names) == sorted(f"org-{i}" for i in range(300))
    assert count(db) == 300
    assert min(seen_at_answer) >= 1
    assert writer.jobs == 300
    assert writer.batches < 300, "writes that arrive together share a commit"


@pytest.mark.parametrize("savepoint", [True, False])
def test_a_refused_write_fails_alone(db, savepoint: bool):
    # In its own savepoint a refusal may have written first; without one it promises it did not.
    refusal = refuse if savepoint else refuse_cleanly
    writer = GroupCommitWriter(db)

    async def run() -> Any:
        return await asyncio.gather(
            writer.submit(insert_org("kept-1"), savepoint=savepoint),
            writer.submit(refusal, savepoint=savepoint),
            writer.submit(insert_org("kept-2"), savepoint=savepoint),
            return_exceptions=True,
        )

    try:
        results = asyncio.run(run())
    finally:
        writer.close()
    assert results[0] == "kept-1" and results[2] == "kept-2"
    assert isinstance(results[1], WalletError)
    with db.read() as conn:
        assert sorted(conn.scalars(select(orgs.c.name))) == ["kept-1", "kept-2"]


def test_close_finishes_queued_writes(sqlite_db):
    writer = GroupCommitWriter(sqlite_db)

    async def run() -> None:
        await writer.submit(insert_org("first"))

    asyncio.run(run())
    writer.close()
    assert count(sqlite_db) == 1
    with pytest.raises(AssertionError):
        assert writer._thread is not None


def test_a_hold_and_the_settlement_queued_soon_after_share_one_commit(db):
    writer = GroupCommitWriter(db, linger_seconds=1.0)

    async def run() -> tuple[int, int]:
        await writer.submit(insert_org("held"), durable=False)  # answered before its commit
        seen_before_settlement = count(db)
        await writer.submit(insert_org("settled"))
        return seen_before_settlement, count(db)

    try:
        before, after = asyncio.run(run())
    finally:
        writer.close()
    assert before == 0, "the hold's transaction stays open for the settlement"
    assert after == 2
    assert writer.batches == 1


def test_a_lone_hold_is_committed_once_the_linger_runs_out(db):
    writer = GroupCommitWriter(db, linger_seconds=0.05)

    async def run() -> int:
        await writer.submit(insert_org("held"), durable=False)
        for _ in range(200):  # at most 2 s: the commit comes after the 50 ms linger
            if count(db) == 1:
                break
            await asyncio.sleep(0.01)
        return count(db)

    try:
        seen = asyncio.run(run())
    finally:
        writer.close()
    assert seen == 1
    assert writer.batches == 1


def test_an_unexpected_failure_without_a_savepoint_fails_alone_after_its_batch_is_retried(db):
    writer = GroupCommitWriter(db, linger_seconds=1.0)

    def half_done(conn: Connection) -> None:
        conn.execute(orgs.insert().values(id="half", name="half", created_at=NOW))
        raise RuntimeError("a bug after a write")

    async def run() -> Any:
        # The hold-like write lingers, so all four land in one batch.
        first = asyncio.ensure_future(writer.submit(insert_org("hold"), durable=False))
        await asyncio.sleep(0.05)
        return await asyncio.gather(
            first,
            writer.submit(insert_org("before"), savepoint=False),
            writer.submit(half_done, savepoint=False),
            writer.submit(insert_org("after")),
            return_exceptions=True,
        )

    try:
        results = asyncio.run(run())
    finally:
        writer.close()
    # The hold was answered before the failure, as holds are; its batch rolled back, and a hold
    # cannot be taken again under the same answer, so it is lost (its settlement charges without it).
    assert results[0] == "hold"
    assert results[1] == "before" and results[3] == "after", results
    assert isinstance(results[2], RuntimeError)
    with db.read() as conn:
        assert sorted(conn.scalars(select(orgs.c.name))) == ["after", "before"]
    assert writer.isolated_batches == 1
    assert writer.isolated_failures == 1


def poisoned_receipt(conn: Connection) -> str:
    """A deferred insert that the database refuses only when the batch applies it."""
    deferred.insert(conn, INSERT_ORG, {"id": "poison", "name": "z\x00", "created_at": NOW})
    deferred.insert(conn, INSERT_ORG, {"id": "poison", "name": "twice", "created_at": NOW})
    return "poison"


@pytest.mark.parametrize("durable_hold", [False, True])
def test_one_write_that_the_database_refuses_never_fails_the_rest_of_its_batch(db, durable_hold: bool):
    # A receipt with a NUL in PostgreSQL text (or a duplicate row on either engine) used to roll
    # back the whole group commit: every request of the batch failed with it.
    writer = GroupCommitWriter(db, linger_seconds=1.0)

    async def run() -> Any:
        first = asyncio.ensure_future(writer.submit(insert_org("held"), durable=durable_hold))
        await asyncio.sleep(0.05)
        return await asyncio.gather(
            first,
            *(writer.submit(insert_org(f"good-{i}"), savepoint=False) for i in range(5)),
            writer.submit(poisoned_receipt, savepoint=False),
            *(writer.submit(insert_org(f"late-{i}")) for i in range(5)),
            return_exceptions=True,
        )

    try:
        results = asyncio.run(run())
    finally:
        writer.close()
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(failed) == 1 and results[6] is failed[0], results
    names = {f"good-{i}" for i in range(5)} | {f"late-{i}" for i in range(5)}
    with db.read() as conn:
        stored = set(conn.scalars(select(orgs.c.name)))
    assert names <= stored
    assert "twice" not in stored
    assert writer.isolated_failures == 1
    metrics = Metrics(HealthBoard(time.monotonic))
    metrics.watch_writer(writer)
    assert b"glasskey_writer_isolated_failures_total 1.0" in metrics.render()


def test_on_sqlite_the_wal_is_checkpointed_in_the_background_not_in_the_writers_commits(sqlite_db):
    writer = GroupCommitWriter(sqlite_db)
    writer.checkpoint_seconds = 0.02

    async def run() -> None:
        await writer.submit(insert_org("one"))

    try:
        asyncio.run(run())
        assert writer._conn is not None
        assert writer._conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
        writer._conn.rollback()
        for _ in range(200):  # at most 2 s
            if writer.checkpoints:
                break
            time.sleep(0.01)
    finally:
        writer.close()
    assert writer.checkpoints >= 1
    assert writer._checkpointer is None, "closing the writer stops its checkpointer"


def on_thread(seen: list[int], work: Callable[[Connection], Any]) -> Callable[[Connection], Any]:
    def recorded(conn: Connection) -> Any:
        seen.append(threading.get_ident())
        return work(conn)

    return recorded


def test_a_lone_requests_hold_and_settlement_run_on_the_loop_and_share_one_commit(sqlite_db):
    writer = GroupCommitWriter(sqlite_db, linger_seconds=1.0)
    threads: list[int] = []

    async def run() -> tuple[int, int]:
        await writer.submit(on_thread(threads, insert_org("held")), durable=False, lone=True)
        seen_before_settlement = count(sqlite_db)
        await writer.submit(on_thread(threads, insert_org("settled")), lone=True)
        return seen_before_settlement, count(sqlite_db)

    try:
        before, after = asyncio.run(run())
    finally:
        writer.close()
    assert threads == [threading.get_ident()] * 2, "no hand-off to the writer thread"
    assert before == 0, "the hold's transaction stays open for the settlement"
    assert after == 2, "the settlement is answered after its commit"
    assert writer.batches == 1


def test_a_lone_hold_on_the_loop_is_committed_by_a_timer_once_the_linger_runs_out(sqlite_db):
    writer = GroupCommitWriter(sqlite_db, linger_seconds=0.05)

    async def run() -> list[int]:
        await writer.submit(insert_org("held"), durable=False, lone=True)
        seen = [count(sqlite_db)]
        await asyncio.sleep(0.3)
        seen.append(count(sqlite_db))
        return seen

    try:
        seen = asyncio.run(run())
    finally:
        writer.close()
    assert seen == [0, 1]
    assert writer.batches == 1


def test_writes_of_the_loop_join_its_open_transaction_and_other_writers_wait_for_it(sqlite_db):
    writer = GroupCommitWriter(sqlite_db, linger_seconds=1.0)
    threads: list[int] = []

    async def run() -> None:
        await writer.submit(insert_org("lone-hold"), durable=False, lone=True)
        # Not lone any more (another request came): still on the loop, in the open transaction.
        await writer.submit(on_thread(threads, insert_org("second-hold")), durable=False)
        # A write of this thread outside the writer ends the open transaction first, not a deadlock.
        with sqlite_db.write() as conn:
            conn.execute(orgs.insert().values(id="admin", name="admin", created_at=NOW))

    try:
        asyncio.run(run())
        assert count(sqlite_db) == 3
        # With nothing open, a write that is not lone goes to the writer thread.
        asyncio.run(writer.submit(on_thread(threads, insert_org("queued"))))
    finally:
        writer.close()
    assert threads[0] == threading.get_ident()
    assert threads[1] != threading.get_ident()
    assert count(sqlite_db) == 4


def test_closing_the_writer_commits_the_transaction_a_finished_loop_left_open(sqlite_db):
    writer = GroupCommitWriter(sqlite_db, linger_seconds=60.0)

    async def run() -> None:
        await writer.submit(insert_org("held"), durable=False, lone=True)

    asyncio.run(run())  # the loop is gone; its timer will never fire
    assert count(sqlite_db) == 0
    writer.close()
    assert count(sqlite_db) == 1


def test_a_transaction_a_finished_loop_left_open_blocks_neither_the_next_loop_nor_a_plain_write(sqlite_db):
    writer = GroupCommitWriter(sqlite_db, linger_seconds=60.0)

    async def hold(name: str) -> None:
        await writer.submit(insert_org(name), durable=False, lone=True)

    try:
        asyncio.run(hold("first"))
        # The next loop's write (not lone: it would go to the writer thread) ends it first.
        asyncio.run(asyncio.wait_for(writer.submit(insert_org("second")), timeout=10))
        assert count(sqlite_db) == 2
        asyncio.run(hold("third"))
        with sqlite_db.write() as conn:  # on the same thread, with no loop running
            conn.execute(orgs.insert().values(id="plain", name="plain", created_at=NOW))
    finally:
        writer.close()
    assert count(sqlite_db) == 4


def test_on_the_loop_a_refusal_fails_alone_and_a_bug_rolls_back_the_open_transaction(sqlite_db):
    writer = GroupCommitWriter(sqlite_db, linger_seconds=1.0)

    def half_done(conn: Connection) -> None:
        conn.execute(orgs.insert().values(id="half", name="half", created_at=NOW))
        raise RuntimeError("a bug after a write")

    async def run() -> list[Any]:
        results: list[Any] = [await writer.submit(insert_org("kept"), durable=False, lone=True)]
        for work in (refuse_cleanly, insert_org("committed")):
            try:
                results.append(await writer.submit(work, savepoint=False, lone=True))
            except WalletError as refusal:
                results.append(refusal)
        await writer.submit(insert_org("lost"), durable=False, lone=True)
        try:
            await writer.submit(half_done, savepoint=False, lone=True)
        except RuntimeError as bug:
            results.append(bug)
        results.append(await writer.submit(insert_org("after"), lone=True))
        return results

    try:
        results = asyncio.run(run())
    finally:
        writer.close()
    assert results[0] == "kept" and isinstance(results[1], WalletError) and results[2] == "committed"
    assert isinstance(results[3], RuntimeError) and results[4] == "after"
    with sqlite_db.read() as conn:
        assert sorted(conn.scalars(select(orgs.c.name))) == ["after", "committed", "kept"]


def test_on_postgresql_a_lone_write_still_goes_to_the_writer_thread(db):
    if db.dialect != "postgresql":
        pytest.skip("the loop runs writes itself on SQLite only")
    writer = GroupCommitWriter(db)
    threads: list[int] = []
    try:
        asyncio.run(writer.submit(on_thread(threads, insert_org("one")), lone=True))
    finally:
        writer.close()
    assert threads and threads[0] != threading.get_ident()
    assert count(db) == 1


INSERT_ORG = DriverStatement(
    "INSERT INTO orgs (id, name, created_at) VALUES (:id, :name, :created_at)", {"created_at": UTCDateTime()}
)


def send_org(name: str) -> Callable[[Connection], Later[int]]:
    """A write that sends its insert and reads the answer in its ``Later``."""

    def work(conn: Connection) -> Later[int]:
        sent = INSERT_ORG.send(conn, {"id": name, "name": name, "created_at": NOW})
        return Later(lambda: int(sent.cursor.rowcount))

    return work


def in_one_take(writer: GroupCommitWriter, *works: tuple[Callable[[Connection], Any], bool]) -> list[Any]:
    """Submit ``works`` (each with its savepoint flag) so that the writer takes them together.

    The writer is kept off its connection until all are queued; it then runs the first of them
    alone (a batch starts with one write) and takes the rest at once."""

    async def run() -> list[Any]:
        writer._conn_lock.acquire()
        try:
            first = asyncio.ensure_future(writer.submit(insert_org("opener"), durable=False))
            rest = [asyncio.ensure_future(writer.submit(work, savepoint=savepoint)) for work, savepoint in works]
            await asyncio.sleep(0)  # every submit has queued its job
        finally:
            writer._conn_lock.release()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    try:
        return asyncio.run(run())[1:]
    finally:
        writer.close()


def test_writes_taken_together_send_their_statements_in_one_pipeline(db):
    def counts_orgs(conn: Connection) -> int:
        return count_in(conn)

    results = in_one_take(GroupCommitWriter(db), (send_org("sent"), False), (counts_orgs, False))
    assert results[0] == 1  # the Later read its insert's answer
    # The opener committed nothing yet. On PostgreSQL the insert waits in the pipeline until
    # every write taken has run its first part; SQLite runs it at once.
    assert results[1] == (1 if db.dialect == "postgresql" else 2)
    assert count(db) == 2


def count_in(conn: Connection) -> int:
    return int(conn.scalar(select(func.count()).select_from(orgs)) or 0)


def test_a_refusal_in_a_later_drops_the_deferred_writes_of_both_parts_of_its_write(db):
    def refused_later(conn: Connection) -> Later[None]:
        deferred.insert(conn, INSERT_ORG, {"id": "first-part", "name": "first-part", "created_at": NOW})

        def rest() -> None:
            deferred.insert(conn, INSERT_ORG, {"id": "rest", "name": "rest", "created_at": NOW})
            raise WalletError("refused after the pipeline")

        return Later(rest)

    results = in_one_take(GroupCommitWriter(db), (refused_later, False), (send_org("kept"), False))
    assert isinstance(results[0], WalletError)
    assert results[1] == 1
    with db.read() as conn:
        assert sorted(conn.scalars(select(orgs.c.name))) == ["kept", "opener"]


def test_a_write_in_a_savepoint_runs_what_it_sends_inside_it(db):
    def refused_after_sending(conn: Connection) -> Later[None]:
        INSERT_ORG.send(conn, {"id": "undone", "name": "undone", "created_at": NOW})

        def rest() -> None:
            raise WalletError("refused after sending")

        return Later(rest)

    results = in_one_take(GroupCommitWriter(db), (refused_after_sending, True), (send_org("kept"), False))
    assert isinstance(results[0], WalletError)
    assert results[1] == 1
    with db.read() as conn:
        assert sorted(conn.scalars(select(orgs.c.name))) == ["kept", "opener"]


def test_an_error_in_the_pipeline_fails_only_the_write_that_caused_it(db):
    def duplicate(conn: Connection) -> Later[None]:
        INSERT_ORG.send(conn, {"id": "twice", "name": "twice", "created_at": NOW})
        INSERT_ORG.send(conn, {"id": "twice", "name": "twice", "created_at": NOW})
        return Later(lambda: None)

    results = in_one_take(GroupCommitWriter(db), (send_org("kept"), False), (duplicate, False))
    integrity_errors = (sqlite3.IntegrityError, psycopg.IntegrityError)
    assert results[0] == 1, results
    assert isinstance(results[1], integrity_errors), results
    with db.read() as conn:
        # The opener, answered before its commit as holds are, is lost with the failed batch on
        # PostgreSQL (the pipeline fails as a whole); on SQLite the duplicate fails in its savepoint-less
        # first part and aborts the batch too.
        assert "kept" in set(conn.scalars(select(orgs.c.name)))


def test_a_caller_cancelled_while_it_waits_out_its_write_still_gets_the_outcome(db):
    # A request must know the hold it took, even if it is cancelled while the hold is written.
    writer = GroupCommitWriter(db)
    seen: list[object] = []

    async def caller() -> None:
        seen.append(await writer.submit(insert_org("held"), durable=False, wait_out_cancellation=True))
        seen.append("after the write")
        await asyncio.sleep(0)  # the cancellation arrives here
        seen.append("never")

    async def run() -> asyncio.Task[None]:
        writer._conn_lock.acquire()  # the write waits until the caller has been cancelled
        task = asyncio.ensure_future(caller())
        await asyncio.sleep(0.01)
        task.cancel("the client left")
        await asyncio.sleep(0.01)
        writer._conn_lock.release()
        with pytest.raises(asyncio.CancelledError, match="the client left"):
            await task
        return task

    try:
        task = asyncio.run(run())
    finally:
        writer.close()
    assert seen == ["held", "after the write"]
    assert task.cancelled()
    assert count(db) == 1


def test_an_anyio_cancel_scope_cancelled_while_its_task_waits_out_a_write_still_ends_quietly(db):
    writer = GroupCommitWriter(db)
    seen: list[object] = []

    async def caller() -> None:
        seen.append(await writer.submit(insert_org("held"), durable=False, wait_out_cancellation=True))
        await asyncio.sleep(1)  # cancelled here, by the scope

    async def run() -> None:
        writer._conn_lock.acquire()
        # The scope keeps cancelling a task that is still waiting, until the write is let through.
        threading.Timer(0.05, writer._conn_lock.release).start()
        async with anyio.create_task_group() as group:
            group.start_soon(caller)
            await asyncio.sleep(0.01)
            group.cancel_scope.cancel()
        seen.append("the scope absorbed its cancellation")

    try:
        asyncio.run(run())
    finally:
        writer.close()
    assert seen == ["held", "the scope absorbed its cancellation"]
    assert count(db) == 1


def test_a_refusal_waited_out_through_a_cancellation_is_raised_and_the_cancellation_still_arrives(db):
    writer = GroupCommitWriter(db)
    seen: list[object] = []

    async def caller() -> None:
        try:
            await writer.submit(refuse_cleanly, savepoint=False, wait_out_cancellation=True)
        except WalletError as refusal:
            seen.append(type(refusal).__name__)
        await asyncio.sleep(0)
        seen.append("never")

    async def run() -> None:
        writer._conn_lock.acquire()
        task = asyncio.ensure_future(caller())
        await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.sleep(0.01)
        writer._conn_lock.release()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        asyncio.run(run())
    finally:
        writer.close()
    assert seen == ["WalletError"]


@pytest.mark.parametrize("restarts", [True, False])
def test_on_sqlite_the_wal_starts_over_once_it_is_large_so_it_stays_bounded(sqlite_db, restarts: bool):
    # Under steady writes a PASSIVE checkpoint never catches up with the last commit, and SQLite
    # never starts the WAL over by itself: it grew without end (3 GB after 100,000 requests).
    bound = 1024 * 1024
    writer = GroupCommitWriter(sqlite_db)
    writer.checkpoint_seconds = 0.01
    if restarts:
        writer.wal_restart_bytes = bound // 4
    wal = Path(f"{sqlite_db.engine.url.database}-wal")
    largest = 0

    async def run() -> None:
        nonlocal largest
        for batch in range(300):
            await asyncio.gather(*(writer.submit(insert_org(f"org-{batch}-{i}")) for i in range(10)))
            largest = max(largest, wal.stat().st_size)

    try:
        asyncio.run(run())
    finally:
        writer.close()
    assert count(sqlite_db) == 3000
    if restarts:
        assert writer.wal_restarts >= 1
        assert largest < bound
    else:  # the control: the same writes without a restart take the WAL past the bound
        assert writer.wal_restarts == 0
        assert largest > bound
