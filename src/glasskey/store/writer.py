"""Group commit: many requests' ledger and receipt writes share one database transaction.

A request hands its write (a function of a ``Connection``) to the writer and awaits it. One
writer thread, on one connection it keeps, takes everything queued, runs each write (in its own
savepoint unless the write promises its refusals leave nothing behind, see ``submit``) so that
one write's refusal (an insufficient balance) undoes only that write, applies the batch's
deferred writes (``store.deferred``) and commits once. Each caller of a durable write is
answered only after the commit that carried it, so a response is never sent for a charge or
receipt that a killed process could lose.

With a single writer per process, a commit is paid once per batch instead of once per request,
and SQLite's single-writer lock is taken once per batch instead of contended per request.

A lone request (the only one the process is serving) gains nothing from a batch, and would pay
four thread hand-offs for its hold and its settlement. On SQLite its writes run on the event loop
itself when the writer is idle: the hold opens a transaction that stays open (as the writer's
linger would keep it) until the settlement commits it or the linger runs out, on a loop timer.
Writes submitted from that loop while it is open join it; the writer thread waits for it.

On PostgreSQL every statement is a round trip. A write without a savepoint may ``send`` its
statements (``DriverStatement.send``) and return a ``Later``: the writer runs the first part of
every write it has taken, flushes what they sent as one pipeline, then runs each ``Later`` to read
its answers. A batch of holds then waits for the server once, not once per hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar, overload

from sqlalchemy import Connection, Transaction

from glasskey.errors import GlasskeyError
from glasskey.store import deferred, driver
from glasskey.store.database import BUSY_TIMEOUT_MS, WAL_SIZE_LIMIT_BYTES, Database
from glasskey.store.deferred import Deferred
from glasskey.store.driver import Pipeline, Savepoint

log = logging.getLogger("glasskey.store.writer")
T = TypeVar("T")
MAX_BATCH = 512
# How long a transaction of holds alone stays open for more writes: about one upstream round trip
# on a fast route. Other writers of the process (the sweep, the admin API) wait at most this long.
LINGER_SECONDS = 0.003
CHECKPOINT_SECONDS = 0.5
# The WAL is started over once it is this large (SQLite; see _restart_wal). After that, SQLite
# truncates the file back to this size (journal_size_limit), so the disk it takes stays bounded too.
WAL_RESTART_BYTES = WAL_SIZE_LIMIT_BYTES
RESTART_BUSY_MS = 100


@dataclass(frozen=True)
class Later(Generic[T]):
    """What a write returns once it has sent its statements: the rest of it, which reads their answers.

    ``rest`` runs in the same job, after the writer has flushed the batch's pipeline: its refusal
    fails the job alone, and the job's deferred writes of both parts stand or fall together.
    """

    rest: Callable[[], T]


@dataclass
class _Job:
    work: Callable[[Connection], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    durable: bool
    savepoint: bool
    outcome: tuple[Any, BaseException | None] | None = None  # set on the loop, with the future


@dataclass
class _Inline:
    """A transaction of the writer's connection that the event loop opened for a lone request."""

    loop: asyncio.AbstractEventLoop
    transaction: Transaction
    writes: Deferred
    timer: asyncio.TimerHandle | None = None


class _BatchAborted(Exception):
    """A job without a savepoint failed unexpectedly; the whole batch must be rolled back."""


_STOP = object()


class GroupCommitWriter:
    def __init__(self, db: Database, *, max_batch: int = MAX_BATCH, linger_seconds: float = LINGER_SECONDS) -> None:
        self.db = db
        self.max_batch = max_batch
        self.linger_seconds = linger_seconds
        self._queue: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._conn: Connection | None = None
        # Whoever runs a transaction on ``_conn``: the writer thread, or a loop with ``_inline`` open.
        self._conn_lock = threading.Lock()
        self._inline: _Inline | None = None
        db.yield_write = self._end_inline_here
        self.checkpoint_seconds = CHECKPOINT_SECONDS
        self.wal_restart_bytes = WAL_RESTART_BYTES
        self.wal_restarts = 0
        self._checkpointer: threading.Thread | None = None
        self._stop_checkpoints = threading.Event()
        self.checkpoints = 0
        self.batches = 0
        self.jobs = 0
        # Batches that failed and were retried write by write, and the writes that then failed alone.
        self.isolated_batches = 0
        self.isolated_failures = 0

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="glasskey-writer", daemon=True)
                self._thread.start()
                if self.db.dialect == "sqlite":
                    self._stop_checkpoints.clear()
                    self._checkpointer = threading.Thread(
                        target=self._checkpoint_forever, name="glasskey-checkpointer", daemon=True
                    )
                    self._checkpointer.start()

    def _checkpoint_forever(self) -> None:
        """Copy the WAL into the database file in the background (SQLite).

        SQLite otherwise checkpoints inside whichever commit pushes the WAL past 1,000 pages, with
        an fsync: one request in a hundred then waited several milliseconds for it. The writer's
        connection does not checkpoint; a PASSIVE checkpoint here never blocks its writes.
        """
        while not self._stop_checkpoints.wait(self.checkpoint_seconds):
            try:
                with self.db.engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
                    self.checkpoints += 1
                    if self._wal_bytes() > self.wal_restart_bytes:
                        self._restart_wal(conn)
            except Exception:  # a checkpoint missed is made up by the next one
                log.warning("WAL checkpoint failed", exc_info=True)

    def _wal_bytes(self) -> int:
        try:
            return os.path.getsize(f"{self.db.engine.url.database}-wal")
        except OSError:
            return 0

    def _restart_wal(self, conn: Connection) -> None:
        """Have the next write start the WAL again from its beginning (SQLite).

        SQLite starts the WAL over only once a checkpoint has copied all of it and no reader still
        uses it. Under steady writes a PASSIVE checkpoint never catches up with the last commit,
        so the WAL (and its index, mapped into the process) grew by about 30 KB per request: 3 GB
        after 100,000 requests. A RESTART checkpoint waits for the readers, with the writer held
        off its connection meanwhile (the PASSIVE one just before has left little to copy); a
        reader slower than its short busy timeout only puts it off to the next round.
        """
        with self._conn_lock:  # the writer's transaction, if one is open, ends first
            conn.exec_driver_sql(f"PRAGMA busy_timeout={RESTART_BUSY_MS}")
            try:
                busy = conn.exec_driver_sql("PRAGMA wal_checkpoint(RESTART)").scalar()
            finally:
                conn.exec_driver_sql(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        if not busy:
            self.wal_restarts += 1

    @overload
    async def submit(
        self,
        work: Callable[[Connection], Later[T]],
        *,
        durable: bool = True,
        savepoint: bool = True,
        lone: bool = False,
        wait_out_cancellation: bool = False,
    ) -> T: ...

    @overload
    async def submit(
        self,
        work: Callable[[Connection], T],
        *,
        durable: bool = True,
        savepoint: bool = True,
        lone: bool = False,
        wait_out_cancellation: bool = False,
    ) -> T: ...

    async def submit(
        self,
        work: Callable[[Connection], Any],
        *,
        durable: bool = True,
        savepoint: bool = True,
        lone: bool = False,
        wait_out_cancellation: bool = False,
    ) -> Any:
        """Run ``work`` in the next group commit and return its result.

        ``durable`` writes are answered after their commit. Others are answered as soon as they
        have run inside the open transaction: a hold needs its floor check answered, not its
        commit, since nothing is acknowledged to the client on the strength of a hold alone.

        Each write runs in its own savepoint, so that its failure undoes only its own writes.
        ``savepoint=False`` spares the two statements (two round trips on PostgreSQL) for a write
        that promises to leave nothing behind when it raises a ``GlasskeyError`` (a refusal); any
        other exception from it rolls back its whole batch, and every write of the batch fails.

        ``lone``: the caller is the only request in flight, so its write may run on the event loop
        (see the module's docstring).

        ``work`` may return a ``Later`` (see the module's docstring); its caller gets what the
        ``Later`` returns.

        ``wait_out_cancellation``: a caller cancelled while it waits still gets the write's outcome
        (a request must know the hold it took), and the cancellation arrives at its next await.
        """
        self._ensure_started()
        loop = asyncio.get_running_loop()
        inline = self._inline
        if inline is not None and inline.loop is not loop and not inline.loop.is_running():
            self._linger_over(inline)  # a loop that stopped left it open: its timer will never fire
            inline = self._inline
        if inline is None and lone and self.db.dialect == "sqlite":
            inline = self._open_inline(loop)
        if inline is not None and inline.loop is loop:
            return self._run_inline(inline, work, durable, savepoint)
        job = _Job(work, loop.create_future(), loop, durable, savepoint)
        self._queue.put(job)
        if wait_out_cancellation:
            return await _outcome_despite_cancellation(job)
        return await job.future

    def _open_inline(self, loop: asyncio.AbstractEventLoop) -> _Inline | None:
        """A transaction for a lone request's writes on the loop, if the writer is idle (else None)."""
        if not self._queue.empty() or not self._conn_lock.acquire(blocking=False):
            return None
        try:
            transaction = self.db.begin_write(self._connection(), blocking=False)
        except BaseException:
            self._conn_lock.release()
            raise
        if transaction is None:  # another write of the process is open: queue behind it
            self._conn_lock.release()
            return None
        self._inline = _Inline(loop, transaction, Deferred())
        return self._inline

    def _run_inline(self, inline: _Inline, work: Callable[[Connection], Any], durable: bool, savepoint: bool) -> Any:
        self.jobs += 1
        try:
            [(result, refusal)] = self._run_jobs(inline.transaction.connection, [(work, savepoint)], inline.writes)
        except _BatchAborted as aborted:
            log.error("a write without its own savepoint failed; its transaction on the event loop is rolled back")
            self._end_inline(commit=False)
            raise aborted.__cause__ or aborted from None
        if durable:
            self._end_inline(commit=True)  # a refused write left nothing; the others' still commit
        elif inline.timer is None:
            inline.timer = inline.loop.call_later(self.linger_seconds, self._linger_over, inline)
        if refusal is not None:
            raise refusal
        return result

    def _linger_over(self, inline: _Inline) -> None:
        if self._inline is inline:
            try:
                self._end_inline(commit=True)
            except Exception:  # the holds in it are lost; their settlements charge without them
                log.exception("committing the event loop's transaction failed")

    def _end_inline(self, *, commit: bool) -> None:
        """Commit (or roll back) the loop's open transaction and give the connection back."""
        inline = self._inline
        if inline is None:
            return
        self._inline = None
        if inline.timer is not None and not inline.loop.is_closed():
            inline.timer.cancel()
        try:
            try:
                if commit:
                    inline.writes.apply(inline.transaction.connection)
            except BaseException:
                self.db.end_write(inline.transaction, commit=False)
                raise
            self.db.end_write(inline.transaction, commit=commit)
            self.batches += 1
        except BaseException:
            self._drop_connection()
            raise
        finally:
            self._conn_lock.release()

    def _end_inline_here(self) -> None:
        """``Database.yield_write``: this thread is about to write; its own open transaction ends first."""
        inline = self._inline
        if inline is not None and (_running_loop() is inline.loop or not inline.loop.is_running()):
            self._linger_over(inline)

    def close(self, timeout_seconds: float = 10.0) -> None:
        """Commit the loop's open transaction and finish what is queued, then stop the threads."""
        inline = self._inline
        if inline is not None:
            if inline.loop.is_running() and _running_loop() is not inline.loop:
                done = threading.Event()

                def commit_there() -> None:
                    self._linger_over(inline)
                    done.set()

                inline.loop.call_soon_threadsafe(commit_there)
                done.wait(timeout_seconds)
            else:
                self._linger_over(inline)
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout_seconds)
        self._thread = None
        if self._checkpointer is not None:
            self._stop_checkpoints.set()
            self._checkpointer.join(timeout_seconds)
            self._checkpointer = None

    def _drop_connection(self) -> None:
        # A connection whose transaction failed may be broken (a lost server): start afresh.
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # closing a broken connection may fail too; it is dropped either way
                log.debug("closing the writer's connection failed", exc_info=True)
            self._conn = None

    def _run(self) -> None:
        running = True
        while running:
            first = self._queue.get()
            if first is _STOP:
                break
            with self._conn_lock:
                running = self._commit(first)  # type: ignore[arg-type]
        with self._conn_lock:
            self._drop_connection()

    def _connection(self) -> Connection:
        # One connection for the writer's life: a checkout per batch costs more than a small batch.
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = self.db.engine.connect()
            if self.db.dialect == "sqlite":
                self._conn.exec_driver_sql("PRAGMA wal_autocheckpoint=0")  # the checkpointer does it
                self._conn.commit()
        return self._conn

    def _take(self, limit: int) -> tuple[list[_Job], bool]:
        """Up to ``limit`` jobs already queued, and whether the stop sign came after them."""
        jobs: list[_Job] = []
        while len(jobs) < limit:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return jobs, True
            jobs.append(item)  # type: ignore[arg-type]
        return jobs, False

    def _commit(self, first: _Job) -> bool:
        """One group commit starting with ``first``; False once the writer has been told to stop.

        A transaction that holds only non-durable writes (holds) waits up to ``linger_seconds``
        for more before it commits: a lone request's settlement, queued right after its upstream
        answers, then shares its hold's commit instead of paying for one of its own.
        """
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        batch: list[_Job] = []
        answered: set[int] = set()  # non-durable jobs already answered, by id()
        running = True
        try:
            with self.db.transaction(self._connection()) as conn:
                batch_writes = Deferred()
                pending = [first]
                while pending:
                    batch += pending
                    ran = self._run_jobs(conn, [(job.work, job.savepoint) for job in pending], batch_writes)
                    for job, (result, refusal) in zip(pending, ran, strict=True):
                        if job.durable:
                            outcomes.append((job, result, refusal))
                        else:
                            answered.add(id(job))
                            job.loop.call_soon_threadsafe(_settle_future, job, result, refusal)
                    pending, stopping = self._take(self.max_batch - len(batch))
                    if stopping:
                        running = False
                    elif not pending and not outcomes and len(batch) < self.max_batch:
                        pending, running = self._linger()
                batch_writes.apply(conn)
        except Exception as error:  # nothing of the batch was committed
            if isinstance(error, _BatchAborted) and error.__cause__ is not None:
                log.error("a write without its own savepoint failed; its batch of %d is rolled back", len(batch))
            else:
                log.warning("group commit of %d writes failed; each is retried alone", len(batch), exc_info=True)
                self._drop_connection()
            # One write must never fail the others: each one not yet answered runs again in a
            # transaction of its own, so only the guilty one fails. A hold already answered cannot
            # run again (it would take a second hold under another id): it is lost, and its
            # settlement charges without it (``hold_lost_before_settlement``).
            retried = [job for job in batch if job.durable or id(job) not in answered]
            self.isolated_batches += 1
            outcomes = [(job, *self._commit_alone(job)) for job in retried]
            self.isolated_failures += sum(1 for _, _, failure in outcomes if failure is not None)
        self.batches += 1
        self.jobs += len(batch)
        for job, result, failure in outcomes:
            job.loop.call_soon_threadsafe(_settle_future, job, result, failure)
        return running

    def _commit_alone(self, job: _Job) -> tuple[Any, BaseException | None]:
        """Run one write in a transaction of its own: its result, or the error that fails it alone."""
        try:
            with self.db.transaction(self._connection()) as conn:
                writes = Deferred()
                [(result, refusal)] = self._run_jobs(conn, [(job.work, job.savepoint)], writes)
                writes.apply(conn)
        except _BatchAborted as aborted:
            log.error("a write failed alone after its batch failed", exc_info=aborted.__cause__)
            return None, aborted.__cause__ or aborted
        except Exception as error:
            log.error("a write failed alone after its batch failed", exc_info=error)
            self._drop_connection()
            return None, error
        return result, refusal

    def _linger(self) -> tuple[list[_Job], bool]:
        try:
            item = self._queue.get(timeout=self.linger_seconds)
        except queue.Empty:
            return [], True
        if item is _STOP:
            return [], False
        return [item], True  # type: ignore[list-item]

    @classmethod
    def _run_jobs(
        cls, conn: Connection, works: list[tuple[Callable[[Connection], Any], bool]], batch_writes: Deferred
    ) -> list[tuple[Any, BaseException | None]]:
        """Run writes (each with whether it has a savepoint): the first part of each, then the
        pipeline of what they sent, then the ``Later`` of each that returned one. Each write's
        result, or the error that fails it alone; ``_BatchAborted`` when one's writes cannot be
        undone alone. A write's deferred writes join the batch's only if it succeeded."""
        pipeline = Pipeline()
        started = []
        for work, savepoint in works:
            writes = Deferred()
            # A write in a savepoint runs its statements at once, inside it.
            driver.sending(None if savepoint else pipeline)
            try:
                started.append((cls._run_job(conn, partial(work, conn), savepoint, writes), writes))
            finally:
                driver.sending(None)
        pipeline.flush(conn)
        outcomes: list[tuple[Any, BaseException | None]] = []
        for (result, refusal), writes in started:
            if refusal is None and isinstance(result, Later):
                result, refusal = cls._run_job(conn, result.rest, False, writes)
            if refusal is None:
                batch_writes.merge(writes)  # a failed job's deferred writes are dropped with it
            outcomes.append((result, refusal))
        return outcomes

    @staticmethod
    def _run_job(
        conn: Connection, work: Callable[[], Any], savepoint: bool, job_writes: Deferred
    ) -> tuple[Any, BaseException | None]:
        """Run one write, or one part of it, collecting its deferred writes into ``job_writes``."""
        deferred.collecting(job_writes)
        try:
            if savepoint:
                with Savepoint(conn):
                    result = work()
                    if isinstance(result, Later):  # what it sent ran at once: finish inside the savepoint
                        result = result.rest()
            else:
                result = work()
        except GlasskeyError as refusal:  # a refusal goes back to its caller only
            # With a savepoint, its writes are undone; without, the job promised to leave none.
            return None, refusal
        except Exception as job_error:
            if not savepoint:
                # Its writes may be half done and nothing can undo them alone: undo the batch.
                raise _BatchAborted from job_error
            return None, job_error
        finally:
            deferred.collecting(None)
        return result, None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _outcome_despite_cancellation(job: _Job) -> Any:
    """The job's outcome, even if the waiting task is cancelled meanwhile; the cancellation is then
    asked again, with its message, and arrives at the task's next await.

    What a shielded anyio ``CancelScope`` around the wait would do for anyio's own cancellations, at
    a fraction of its cost (two per request), and for a plain ``Task.cancel`` too. A cancellation
    cancels the future the task awaits; unless the writer has answered already (``job.outcome``),
    the job gets a new future, which the writer answers instead (``_settle_future`` reads
    ``job.future`` on the loop, when it runs).
    """
    try:
        return await job.future
    except asyncio.CancelledError as cancelled:
        cancellation = cancelled
    task = asyncio.current_task()
    if task is None:
        raise cancellation
    task.uncancel()  # asked again once, below: the count of requests stays as it was
    while job.outcome is None:
        if job.future.cancelled():
            job.future = job.loop.create_future()
        try:
            with contextlib.suppress(Exception):  # an error is the outcome, raised below
                await job.future
        except asyncio.CancelledError as cancelled:
            cancellation = cancelled
            task.uncancel()
    task.cancel(cancellation.args[0] if cancellation.args else None)
    result, error = job.outcome
    if error is not None:
        raise error
    return result


def _settle_future(job: _Job, result: Any, error: BaseException | None) -> None:
    job.outcome = (result, error)
    future = job.future
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
