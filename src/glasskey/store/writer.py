"""Group commit: many requests' ledger and receipt writes share one database transaction.

A request hands its write (a ``Write``: ``send(batch)`` then ``finish(batch)``) to the writer and
awaits it. One group commit, on one connection the writer keeps: take every write queued, ``send``
each, flush what they sent (one PostgreSQL pipeline: one wait for the server), ``finish`` each,
apply the batch's deferred writes, commit once, answer. A refusal (a ``GlasskeyError`` from
``finish``: an insufficient balance, a spent budget) fails its write alone and leaves nothing
behind. Anything else rolls the batch back, and its writes run again one by one, each in a
transaction of its own, so only the guilty one fails.

Durable writes (settlements) are answered only after the commit that carried them, so no response
is sent for a charge or receipt a killed process could lose; a hold is answered once it has finished.

Where it runs. On PostgreSQL, a writer thread (statements are round trips the loop must not wait
on); a batch of holds alone stays open up to ``LINGER_SECONDS`` for more writes, so that a lone
request's settlement shares its hold's commit. On SQLite, the event loop's own thread
(``store.loop_commits``: a writer thread there cost more CPU in GIL hand-offs than SQLite's work).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from asyncio import _get_running_loop as asyncio_running_loop
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection

from glasskey.store.batch import Batch
from glasskey.store.checkpoints import Checkpointer
from glasskey.store.commands import Outcome, Write, run_commands
from glasskey.store.database import Database, WriteLockBusy
from glasskey.store.loop_commits import LoopCommits
from glasskey.store.waiting import Answer

log = logging.getLogger("glasskey.store.writer")
T = TypeVar("T")
MAX_BATCH = 512
# How long a transaction of holds alone stays open for more writes: about one upstream round trip
# on a fast route. A lone request's hold and settlement then share one commit (one fsync-free WAL
# commit instead of two on SQLite, one round trip instead of two on PostgreSQL).
LINGER_SECONDS = 0.003


@dataclass
class _Job(Generic[T]):
    write: Write[T]
    answer: Answer[T]
    durable: bool


_STOP = object()


class GroupCommitWriter:
    def __init__(self, db: Database, *, max_batch: int = MAX_BATCH, linger_seconds: float = LINGER_SECONDS) -> None:
        self.db = db
        self.max_batch = max_batch
        self.linger_seconds = linger_seconds
        self._queue: queue.SimpleQueue[_Job[Any] | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._conn: Connection | None = None
        self._conn_lock = threading.Lock()  # the writer's transaction, or the checkpointer's restart
        self.on_loop = db.dialect == "sqlite"  # then each loop commits its own writes (store.loop_commits)
        self.loop_commits: LoopCommits[_Job[Any]] = LoopCommits(
            self._conn_lock, partial(self._commit, take_more=False), max_batch
        )
        # SQLite's write-ahead log is copied and started over beside the writer (store.checkpoints).
        self.checkpointer = Checkpointer(db, self._conn_lock) if db.dialect == "sqlite" else None
        # Counted for /metrics and the tests; written under the connection lock by whoever commits.
        self.batches = 0
        self.jobs = 0
        self.isolated_batches = 0  # batches that failed and were retried write by write
        self.isolated_failures = 0  # writes that then failed alone
        self.alone_writes = 0  # commands of lone requests run on the caller's loop (submit_alone)

    async def submit(self, write: Write[T], *, durable: bool = True) -> T:
        """Run ``write`` in the next group commit and return what its ``finish`` returns.

        ``durable`` writes are answered after their commit, others once they have finished. A
        caller cancelled while it waits still gets the outcome (a request must know the hold it
        took), and the cancellation arrives at its next await.
        """
        self._ensure_started()
        loop = asyncio.get_running_loop()
        job: _Job[T] = _Job(write, Answer(loop), durable)
        if self.on_loop:
            self.loop_commits.queue(loop, job)
        else:
            self._queue.put(job)
        return await job.answer.wait_out()

    async def submit_alone(self, write: Write[T], *, durable: bool = True) -> T:
        """``submit`` for the only request the process is serving: on SQLite, with nothing queued,
        ``write`` runs and commits at once on the calling loop, in a transaction of its own, rather
        than at the end of the loop's iteration (the c=1 p50 on SQLite rose from 1.22 to 2.41 ms
        when lone requests went through the writer thread). PostgreSQL always goes through it.
        """
        self._ensure_started()
        loop = asyncio.get_running_loop()
        if not self.on_loop or self.loop_commits.queued(loop) or not self._conn_lock.acquire(blocking=False):
            return await self.submit(write, durable=durable)
        job: _Job[T] = _Job(write, Answer(loop), durable)
        try:
            self._commit([job], take_more=False)  # answered, to this loop, before it returns
            self.alone_writes += 1
        except WriteLockBusy:
            self.loop_commits.queue(loop, job)
        finally:
            self._conn_lock.release()
        return await job.answer.wait_out()

    def close(self, timeout_seconds: float = 10.0) -> None:
        """Finish what is queued, then stop the threads."""
        loop = asyncio_running_loop()
        if loop is not None:  # called on a loop that may have writes to commit
            self.loop_commits.drain(loop)
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout_seconds)
            self._thread = None
        elif self.on_loop:
            with self._conn_lock:
                self._drop_connection()
        if self.checkpointer is not None:
            self.checkpointer.stop(timeout_seconds)

    # -- the writer thread --------------------------------------------------------------------

    def _run(self) -> None:
        running = True
        while running:
            first = self._queue.get()
            if first is _STOP:
                break
            with self._conn_lock:
                running = self._commit([first], take_more=True)  # type: ignore[list-item]
        with self._conn_lock:
            self._drop_connection()

    def _commit(self, first: list[_Job[Any]], wait: bool = False, *, take_more: bool) -> bool:
        """One group commit of ``first`` and, with ``take_more`` (the writer thread), of what is
        queued meanwhile; False once the writer has been told to stop."""
        batch_jobs = taken = first  # every job taken from the queue is in batch_jobs
        answered: set[int] = set()  # holds answered before the commit, by id()
        durable: list[tuple[_Job[Any], Outcome]] = []
        running = True
        try:
            with self.db.kept_transaction(self._connection(), wait=wait or not self.on_loop) as conn:
                batch = Batch.group(conn)
                while taken:
                    for job, outcome in zip(taken, run_commands(batch, [job.write for job in taken]), strict=True):
                        if job.durable:
                            durable.append((job, outcome))
                        else:
                            _answer(job, outcome)
                            answered.add(id(job))
                    if not take_more:
                        break
                    taken, running = self._take(self.max_batch - len(batch_jobs))
                    if running and not taken and not durable and len(batch_jobs) < self.max_batch:
                        taken, running = self._take(1, self.linger_seconds)
                    batch_jobs = batch_jobs + taken
                # One pipeline on PostgreSQL: a counter's overflow then fails the batch, whose writes
                # are retried alone (``_isolate``), each naming its own counter.
                batch.apply(pipeline=True)
        except WriteLockBusy:  # nothing ran
            raise
        except Exception:  # nothing of the batch was committed
            log.warning("group commit of %d writes failed; each is retried alone", len(batch_jobs), exc_info=True)
            self._drop_connection()
            durable = self._isolate(batch_jobs, answered)
        self.batches += 1
        self.jobs += len(batch_jobs)
        for job, outcome in durable:
            _answer(job, outcome)
        return running

    def _isolate(self, jobs: list[_Job[Any]], answered: set[int]) -> list[tuple[_Job[Any], Outcome]]:
        """Run each write of a failed batch in a transaction of its own: only the guilty one fails.

        A hold answered before the failure runs again under the same transfer id. If it is refused
        now (another write of the retry took the balance first, or the database is gone), the
        request already believes it holds: its settlement finds no hold and charges without it.
        """
        self.isolated_batches += 1
        durable = []
        for job in jobs:
            outcome = self._commit_alone(job.write)
            if outcome[1] is not None:
                self.isolated_failures += 1
            if job.durable:
                durable.append((job, outcome))
            elif id(job) not in answered:
                _answer(job, outcome)
            elif outcome[1] is not None:
                log.error("a hold answered before its batch failed could not be taken again", exc_info=outcome[1])
        return durable

    def _commit_alone(self, write: Write[Any]) -> Outcome:
        try:
            with self.db.kept_transaction(self._connection()) as conn:
                batch = Batch.group(conn)
                [outcome] = run_commands(batch, [write])
                batch.apply()
        except Exception as error:
            log.error("a write failed alone after its batch failed", exc_info=error)
            self._drop_connection()
            return None, error
        return outcome

    def _take(self, limit: int, wait_s: float | None = None) -> tuple[list[_Job[Any]], bool]:
        """Up to ``limit`` jobs queued (waiting up to ``wait_s`` for a first one), and whether the
        writer goes on after them."""
        jobs: list[_Job[Any]] = []
        while len(jobs) < limit:
            try:
                item = self._queue.get(timeout=wait_s) if wait_s and not jobs else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return jobs, False
            jobs.append(item)  # type: ignore[arg-type]
        return jobs, True

    def _connection(self) -> Connection:
        # One connection for the writer's life: a checkout per batch costs more than a small batch.
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = self.db.engine.connect()
            if self.db.dialect == "sqlite":
                self._conn.exec_driver_sql("PRAGMA wal_autocheckpoint=0")  # the checkpointer does it
                self._conn.exec_driver_sql("PRAGMA busy_timeout=0")  # the loop never waits on the lock
                self._conn.commit()
        return self._conn

    def _drop_connection(self) -> None:
        # A connection whose transaction failed may be broken (a lost server): start afresh.
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # closing a broken connection may fail too; it is dropped either way
                log.debug("closing the writer's connection failed", exc_info=True)
            self._conn = None

    def _ensure_started(self) -> None:
        if self._thread is not None or (self.checkpointer is not None and self.checkpointer.running):
            return
        with self._start_lock:
            if self.checkpointer is not None and not self.checkpointer.running:
                self.checkpointer.start()
            if self._thread is None and not self.on_loop:
                self._thread = threading.Thread(target=self._run, name="glasskey-writer", daemon=True)
                self._thread.start()


def _answer(job: _Job[Any], outcome: Outcome) -> None:
    if asyncio_running_loop() is job.answer.loop:  # SQLite's group commit, on the waiting loop
        job.answer.deliver(outcome)
        return
    try:
        job.answer.loop.call_soon_threadsafe(job.answer.deliver, outcome)
    except RuntimeError:  # its loop is closed: nobody waits for the answer any more
        log.debug("a write's loop closed before its answer")
