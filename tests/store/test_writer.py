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
from glasskey.store.batch import Batch
from glasskey.store.database import Database
from glasskey.store.driver import DriverStatement, Sent
from glasskey.store.tables import UTCDateTime, orgs
from glasskey.store.waiting import Answer
from glasskey.store.writer import GroupCommitWriter

INSERT_ORG = DriverStatement(
    "INSERT INTO orgs (id, name, created_at) VALUES (:id, :name, :created_at)", {"created_at": UTCDateTime()}
)


class Run:
    """A write that does all its work in ``finish``: ``work(batch)``'s result is the write's."""

    def __init__(self, work: Callable[[Batch], Any]) -> None:
        self.work = work
        self.threads: list[int] = []

    def send(self, batch: Batch) -> None:
        self.threads.append(threading.get_ident())

    def finish(self, batch: Batch) -> Any:
        return self.work(batch)


def insert_org(name: str) -> Run:
    def work(batch: Batch) -> str:
        batch.conn.execute(orgs.insert().values(id=name, name=name, created_at=NOW))
        return name

    return Run(work)


def refuse_cleanly() -> Run:
    def work(batch: Batch) -> None:
        raise WalletError("refused before writing anything")

    return Run(work)


class SendOrg:
    """A write that sends its insert and reads the answer once the pipeline has run."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: Sent | None = None

    def send(self, batch: Batch) -> None:
        self.sent = batch.send(INSERT_ORG, {"id": self.name, "name": self.name, "created_at": NOW})

    def finish(self, batch: Batch) -> int:
        assert self.sent is not None
        return int(self.sent.cursor.rowcount)


def count(db: Database) -> int:
    with db.read() as conn:
        return count_in(conn)


def count_in(conn: Connection) -> int:
    return int(conn.scalar(select(func.count()).select_from(orgs)) or 0)


def names(db: Database) -> list[str]:
    with db.read() as conn:
        return sorted(conn.scalars(select(orgs.c.name)))


def test_concurrent_writes_are_batched_and_each_is_committed_before_it_is_answered(db):
    writer = GroupCommitWriter(db)
    seen_at_answer: list[int] = []

    async def one(index: int) -> str:
        name = await writer.submit(insert_org(f"org-{index}"))
        seen_at_answer.append(count(db))  # another connection already sees the committed row
        return str(name)

    async def run() -> list[str]:
        return await asyncio.gather(*(one(i) for i in range(300)))

    try:
        result = asyncio.run(run())
    finally:
        writer.close()
    assert sorted(result) == sorted(f"org-{i}" for i in range(300))
    assert count(db) == 300
    assert min(seen_at_answer) >= 1
    assert writer.jobs == 300
    assert writer.batches < 300, "writes that arrive together share a commit"


def test_a_refused_write_fails_alone(db):
    writer = GroupCommitWriter(db)

    async def run() -> Any:
        return await asyncio.gather(
            writer.submit(insert_org("kept-1")),
            writer.submit(refuse_cleanly()),
            writer.submit(insert_org("kept-2")),
            return_exceptions=True,
        )

    try:
        results = asyncio.run(run())
    finally:
        writer.close()
    assert results[0] == "kept-1" and results[2] == "kept-2"
    assert isinstance(results[1], WalletError)
    assert names(db) == ["kept-1", "kept-2"]
    assert writer.isolated_batches == 0, "a refusal is no failure of the batch"


def test_close_finishes_queued_writes(sqlite_db):
    writer = GroupCommitWriter(sqlite_db)

    async def run() -> None:
        await writer.submit(insert_org("first"))

    asyncio.run(run())
    writer.close()
    assert count(sqlite_db) == 1
    assert writer._thread is None


def test_every_write_runs_on_the_writer_thread_on_postgresql_and_on_its_loop_on_sqlite(db):
    writer = GroupCommitWriter(db)
    write = insert_org("one")
    try:
        asyncio.run(writer.submit(write))
    finally:
        writer.close()
    on_this_thread = write.threads == [threading.get_ident()]
    assert on_this_thread == (db.dialect == "sqlite")
    assert (writer._thread is None, writer.on_loop) == (True, db.dialect == "sqlite")
    assert count(db) == 1


def test_a_hold_and_the_settlement_queued_soon_after_share_one_commit(db):
    # The linger is the writer thread's (PostgreSQL). On SQLite the loop commits each loop
    # iteration's writes at once, so the hold is committed before it is answered.
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
    if db.dialect == "sqlite":
        assert (before, after, writer.batches) == (1, 2, 2)
        return
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


def test_an_unexpected_failure_fails_alone_after_its_batch_is_retried_write_by_write(db):
    writer = GroupCommitWriter(db, linger_seconds=1.0)

    def half_done(batch: Batch) -> None:
        batch.conn.execute(orgs.insert().values(id="half", name="half", created_at=NOW))
        raise RuntimeError("a bug after a write")

    async def run() -> Any:
        # The hold-like write lingers, so all four land in one batch.
        first = asyncio.ensure_future(writer.submit(insert_org("hold"), durable=False))
        await asyncio.sleep(0.05)
        return await asyncio.gather(
            first,
            writer.submit(insert_org("before")),
            writer.submit(Run(half_done)),
            writer.submit(insert_org("after")),
            return_exceptions=True,
        )

    try:
        results = asyncio.run(run())
    finally:
        writer.close()
    # The hold was answered before the failure, as holds are; it ran again, alone, and stands.
    assert results[0] == "hold"
    assert results[1] == "before" and results[3] == "after", results
    assert isinstance(results[2], RuntimeError)
    assert names(db) == ["after", "before", "hold"]
    assert writer.isolated_batches == 1
    assert writer.isolated_failures == 1


class PoisonedReceipt:
    """Deferred inserts that the database refuses only when the batch applies them."""

    def send(self, batch: Batch) -> None:
        batch.insert(INSERT_ORG, {"id": "poison", "name": "z\x00", "created_at": NOW})
        batch.insert(INSERT_ORG, {"id": "poison", "name": "twice", "created_at": NOW})

    def finish(self, batch: Batch) -> str:
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
            *(writer.submit(insert_org(f"good-{i}")) for i in range(5)),
            writer.submit(PoisonedReceipt()),
            *(writer.submit(insert_org(f"late-{i}")) for i in range(5)),
            return_exceptions=True,
        )

    try:
        results = asyncio.run(run())
    finally:
        writer.close()
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(failed) == 1 and results[6] is failed[0], results
    expected = {"held"} | {f"good-{i}" for i in range(5)} | {f"late-{i}" for i in range(5)}
    assert set(names(db)) == expected
    assert writer.isolated_failures == 1
    metrics = Metrics(HealthBoard(time.monotonic))
    metrics.watch_writer(writer)
    assert b"glasskey_writer_isolated_failures_total 1.0" in metrics.render()


def test_on_sqlite_the_wal_is_checkpointed_in_the_background_not_in_the_writers_commits(sqlite_db):
    writer = GroupCommitWriter(sqlite_db)
    assert writer.checkpointer is not None
    writer.checkpointer.checkpoint_seconds = 0.02

    async def run() -> None:
        await writer.submit(insert_org("one"))

    try:
        asyncio.run(run())
        assert writer._conn is not None
        assert writer._conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
        writer._conn.rollback()
        for _ in range(200):  # at most 2 s
            if writer.checkpointer.checkpoints:
                break
            time.sleep(0.01)
    finally:
        writer.close()
    assert writer.checkpointer.checkpoints >= 1
    assert not writer.checkpointer.running, "closing the writer stops its checkpointer"


def in_one_take(writer: GroupCommitWriter, *writes: Any) -> list[Any]:
    """Submit ``writes`` so that the writer takes them together.

    The writer is kept off its connection until all are queued; it then runs the first of them
    alone (a batch starts with one write) and takes the rest at once."""

    async def run() -> list[Any]:
        writer._conn_lock.acquire()
        try:
            first = asyncio.ensure_future(writer.submit(insert_org("opener"), durable=False))
            rest = [asyncio.ensure_future(writer.submit(write)) for write in writes]
            await asyncio.sleep(0)  # every submit has queued its job
        finally:
            writer._conn_lock.release()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    try:
        return asyncio.run(run())[1:]
    finally:
        writer.close()


def test_writes_taken_together_send_their_statements_in_one_pipeline(db):
    counted: list[int] = []

    class CountsOrgs:
        def send(self, batch: Batch) -> None:
            counted.append(count_in(batch.conn))

        def finish(self, batch: Batch) -> None:
            return None

    writer = GroupCommitWriter(db)
    results = in_one_take(writer, SendOrg("sent"), CountsOrgs())
    writer_batches = [writer.batches]
    assert results[0] == 1  # the write read its insert's answer after the flush
    # On PostgreSQL the writer thread took the opener alone (its insert runs in its finish), then
    # the others, whose insert waits in the pipeline until every one has sent its statements: the
    # count sees the opener only. On SQLite the loop took all three in one round and the insert
    # ran at once, before the opener's finish: the count sees the insert only.
    assert counted == [1]
    assert count(db) == 2
    assert writer_batches[0] == 1


def test_a_refusal_in_finish_drops_the_deferred_writes_of_its_write(db):
    class RefusedLater:
        def send(self, batch: Batch) -> None:
            batch.insert(INSERT_ORG, {"id": "first-part", "name": "first-part", "created_at": NOW})

        def finish(self, batch: Batch) -> None:
            batch.insert(INSERT_ORG, {"id": "rest", "name": "rest", "created_at": NOW})
            raise WalletError("refused after the pipeline")

    results = in_one_take(GroupCommitWriter(db), RefusedLater(), SendOrg("kept"))
    assert isinstance(results[0], WalletError)
    assert results[1] == 1
    assert names(db) == ["kept", "opener"]


def test_an_error_in_the_pipeline_fails_only_the_write_that_caused_it(db):
    class Duplicate:
        def send(self, batch: Batch) -> None:
            batch.send(INSERT_ORG, {"id": "twice", "name": "twice", "created_at": NOW})
            batch.send(INSERT_ORG, {"id": "twice", "name": "twice", "created_at": NOW})

        def finish(self, batch: Batch) -> None:
            return None

    results = in_one_take(GroupCommitWriter(db), SendOrg("kept"), Duplicate())
    integrity_errors = (sqlite3.IntegrityError, psycopg.IntegrityError)
    assert results[0] == 1, results
    assert isinstance(results[1], integrity_errors), results
    # The opener (answered before its commit, as holds are) and the other write ran again alone.
    assert names(db) == ["kept", "opener"]


def test_a_caller_cancelled_while_it_waits_out_its_write_still_gets_the_outcome(db):
    # A request must know the hold it took, even if it is cancelled while the hold is written.
    writer = GroupCommitWriter(db)
    seen: list[object] = []

    async def caller() -> None:
        seen.append(await writer.submit(insert_org("held"), durable=False))
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
        seen.append(await writer.submit(insert_org("held"), durable=False))
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
            await writer.submit(refuse_cleanly())
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
    checkpointer = writer.checkpointer
    assert checkpointer is not None
    checkpointer.checkpoint_seconds = 0.01
    if restarts:
        checkpointer.wal_restart_bytes = bound // 4
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
        assert checkpointer.wal_restarts >= 1
        assert largest < bound
    else:  # the control: the same writes without a restart take the WAL past the bound
        assert checkpointer.wal_restarts == 0
        assert largest > bound


def test_a_batch_that_cannot_even_begin_answers_every_write_with_the_error(db):
    # The database went away: the first write of a batch must be answered too, hold or not, or its
    # request would wait for ever.
    writer = GroupCommitWriter(db, linger_seconds=0.05)
    down = sqlite3.OperationalError("unable to open database file")

    def no_database() -> Connection:
        raise down

    writer._connection = no_database  # type: ignore[method-assign]

    async def run() -> list[Any]:
        writes = [writer.submit(insert_org("held"), durable=False), writer.submit(insert_org("settled"))]
        return await asyncio.wait_for(asyncio.gather(*writes, return_exceptions=True), timeout=10)

    try:
        results = asyncio.run(run())
    finally:
        writer.close()
    assert results == [down, down]
    assert writer.isolated_failures == 2


def test_a_lone_requests_command_runs_on_its_own_thread_on_sqlite_and_is_committed_when_answered(db):
    writer = GroupCommitWriter(db)
    write = insert_org("alone")

    async def run() -> tuple[str, int]:
        name = await writer.submit_alone(write, durable=False)
        return name, count(db)  # another connection sees it at once: committed, hold or not

    try:
        name, seen = asyncio.run(run())
        refused = asyncio.run(_refused_alone(writer))
    finally:
        writer.close()
    # On SQLite the lone path commits before it answers, hold or not. PostgreSQL goes through the
    # writer, which answers a hold (durable=False) before its commit: it is there once closed.
    assert (name, seen if db.dialect == "sqlite" else count(db)) == ("alone", 1)
    on_this_thread = write.threads == [threading.get_ident()]
    assert on_this_thread == (db.dialect == "sqlite"), "PostgreSQL always goes through the writer thread"
    assert writer.alone_writes == (2 if db.dialect == "sqlite" else 0)
    assert isinstance(refused, WalletError)


async def _refused_alone(writer: GroupCommitWriter) -> BaseException | None:
    try:
        await writer.submit_alone(refuse_cleanly())
    except WalletError as refusal:
        return refusal
    return None


def test_a_lone_command_queues_behind_the_writer_when_it_is_busy(sqlite_db):
    writer = GroupCommitWriter(sqlite_db)
    write = insert_org("queued")

    async def run() -> str:
        writer._conn_lock.acquire()  # the writer (or the checkpointer) holds the connection
        threading.Timer(0.05, writer._conn_lock.release).start()
        return str(await writer.submit_alone(write))

    try:
        assert asyncio.run(run()) == "queued"
    finally:
        writer.close()
    # It waited for the connection in the loop's group commit, not by blocking the loop.
    assert (writer.alone_writes, writer.batches, writer.jobs) == (0, 1, 1)


def test_an_answer_delivered_after_its_wait_was_cancelled_twice_still_reaches_the_caller():
    # The outcome is kept on the answer; each cancellation only costs the waiting task its wake-up.
    async def run() -> list[object]:
        loop = asyncio.get_running_loop()
        answer: Answer[str] = Answer(loop)
        seen: list[object] = []

        async def caller() -> None:
            seen.append(await answer.wait_out())
            await asyncio.sleep(0)  # the cancellation arrives here
            seen.append("never")

        task = asyncio.ensure_future(caller())
        await asyncio.sleep(0)
        task.cancel("first")
        await asyncio.sleep(0)
        task.cancel("second")
        await asyncio.sleep(0)
        loop.call_soon(answer.deliver, ("held", None))
        with pytest.raises(asyncio.CancelledError, match="second"):
            await task
        return seen

    assert asyncio.run(run()) == ["held"]


class OtherProcessWrites:
    """SQLite's write lock held by another connection, as another process would hold it."""

    def __init__(self, db: Database) -> None:
        self.conn = sqlite3.connect(str(db.engine.url.database), isolation_level=None, check_same_thread=False)

    def acquire(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


@pytest.mark.parametrize("taken_by", ["checkpointer", "another_write", "another_process"])
def test_on_sqlite_a_taken_connection_or_write_lock_never_blocks_the_loop(sqlite_db, taken_by: str):
    # The loop's group commit comes back a millisecond later instead of waiting on the lock.
    writer = GroupCommitWriter(sqlite_db)
    lock: Any = {"checkpointer": writer._conn_lock, "another_write": sqlite_db._write_lock}.get(taken_by)
    lock = lock or OtherProcessWrites(sqlite_db)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    async def run() -> tuple[str, int, int]:
        lock.acquire()
        threading.Timer(0.3, lock.release).start()
        ticking = asyncio.ensure_future(ticker())
        name = str(await writer.submit(insert_org("waited")))
        ticking.cancel()
        return name, ticks, count(sqlite_db)

    try:
        name, seen_ticks, seen = asyncio.run(run())
    finally:
        writer.close()
    assert (name, seen) == ("waited", 1)
    assert seen_ticks >= 20, "the loop ran on while the lock was taken"
    assert (writer.batches, writer.jobs) == (1, 1)


def test_on_sqlite_a_loop_commits_at_most_max_batch_writes_at_once(sqlite_db):
    writer = GroupCommitWriter(sqlite_db, max_batch=4)

    async def run() -> list[Any]:
        return await asyncio.gather(*(writer.submit(insert_org(f"org-{i}")) for i in range(10)))

    try:
        results = asyncio.run(run())
    finally:
        writer.close()
    assert sorted(results) == sorted(f"org-{i}" for i in range(10))
    assert (writer.batches, writer.jobs, count(sqlite_db)) == (3, 10, 10)


def test_on_sqlite_close_on_the_loop_commits_what_the_loop_queued(sqlite_db):
    writer = GroupCommitWriter(sqlite_db)

    async def run() -> tuple[int, str]:
        queued = asyncio.ensure_future(writer.submit(insert_org("queued")))
        await asyncio.sleep(0)  # queued, its commit not yet run
        assert writer.loop_commits.queued(asyncio.get_running_loop()), "the write waits for the loop's commit"
        writer.close()
        seen = count(sqlite_db)
        return seen, str(await queued)

    seen, name = asyncio.run(run())
    assert (seen, name) == (1, "queued")
    assert writer.checkpointer is not None and not writer.checkpointer.running


def test_on_sqlite_writes_fail_once_another_process_has_held_the_write_lock_for_the_busy_timeout(
    sqlite_db, monkeypatch
):
    monkeypatch.setattr("glasskey.store.loop_commits.BUSY_TIMEOUT_MS", 200)
    writer = GroupCommitWriter(sqlite_db)
    other = OtherProcessWrites(sqlite_db)

    async def run() -> tuple[Any, float]:
        other.acquire()
        started = time.monotonic()
        try:
            results = await asyncio.gather(
                writer.submit(insert_org("one")), writer.submit(insert_org("two")), return_exceptions=True
            )
        finally:
            other.release()
        return results, time.monotonic() - started

    try:
        results, waited = asyncio.run(run())
        after = asyncio.run(writer.submit(insert_org("after")))  # the lock is free again
    finally:
        writer.close()
    assert all(isinstance(result, sqlite3.OperationalError) for result in results), results
    assert 0.2 <= waited < 5
    assert after == "after" and names(sqlite_db) == ["after"]
