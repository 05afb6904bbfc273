"""Group commit: many requests' ledger and receipt writes share one database transaction.

A request hands its write (a function of a ``Connection``) to the writer and awaits it. One
writer thread, on one connection it keeps, takes everything queued, runs each write inside its own savepoint — so one
write's failure (an insufficient balance) rolls back only that write — and commits once. Each
caller is answered only after the commit that carried its write, so a response is never sent
for a hold, charge or receipt that a killed process could lose.

With a single writer per process, a commit is paid once per batch instead of once per request,
and SQLite's single-writer lock is taken once per batch instead of contended per request.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection

from glasskey.store.database import Database
from glasskey.store.driver import Savepoint

log = logging.getLogger("glasskey.store.writer")
T = TypeVar("T")
MAX_BATCH = 512


@dataclass
class _Job:
    work: Callable[[Connection], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    durable: bool


_STOP = object()


class GroupCommitWriter:
    def __init__(self, db: Database, *, max_batch: int = MAX_BATCH) -> None:
        self.db = db
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._conn: Connection | None = None
        self.batches = 0
        self.jobs = 0

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="glasskey-writer", daemon=True)
                self._thread.start()

    async def submit(self, work: Callable[[Connection], T], *, durable: bool = True) -> T:
        """Run ``work`` in the next group commit and return its result.

        ``durable`` writes are answered after their commit. Others are answered as soon as they
        have run inside the open transaction: a hold needs its floor check answered, not its
        commit, since nothing is acknowledged to the client on the strength of a hold alone.
        """
        self._ensure_started()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Job(work, future, loop, durable))
        return await future

    def close(self, timeout_seconds: float = 10.0) -> None:
        """Finish what is queued, then stop the thread."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout_seconds)
        self._thread = None

    def _drop_connection(self) -> None:
        # A connection whose transaction failed may be broken (a lost server): start afresh.
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # closing a broken connection may fail too; it is dropped either way
                log.debug("closing the writer's connection failed", exc_info=True)
            self._conn = None

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                self._drop_connection()
                return
            batch: list[_Job] = [first]  # type: ignore[list-item]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)  # type: ignore[arg-type]
            self._commit(batch)
            if stop:
                self._drop_connection()
                return

    def _connection(self) -> Connection:
        # One connection for the writer's life: a checkout per batch costs more than a small batch.
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = self.db.engine.connect()
        return self._conn

    def _commit(self, batch: list[_Job]) -> None:
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        try:
            with self.db.transaction(self._connection()) as conn:
                for job in batch:
                    try:
                        with Savepoint(conn):
                            result = job.work(conn)
                    except Exception as job_error:  # each job's own failure goes back to its caller only
                        outcome: tuple[_Job, Any, BaseException | None] = (job, None, job_error)
                    else:
                        outcome = (job, result, None)
                    if job.durable:
                        outcomes.append(outcome)
                    else:
                        job.loop.call_soon_threadsafe(_settle_future, *outcome)
        except Exception as commit_error:  # the commit failed: none of the batch's writes happened
            log.exception("group commit of %d writes failed", len(batch))
            self._drop_connection()
            outcomes = [(job, None, commit_error) for job in batch if job.durable]
        self.batches += 1
        self.jobs += len(batch)
        for job, result, failure in outcomes:
            job.loop.call_soon_threadsafe(_settle_future, job, result, failure)


def _settle_future(job: _Job, result: Any, error: BaseException | None) -> None:
    future = job.future
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
