"""SQLite's group commits, run on the event loop's own thread (``GroupCommitWriter`` on SQLite).

The writes a loop queues while it runs its ready callbacks are committed together right after
them, by a callback of that loop. SQLite answers in microseconds, so there is no round trip to
wait out, and a writer thread only made every statement hand the GIL to and from the busy loop (the
sqlite3 module releases it around each step): at c=16 the thread spent 0.31-0.42 ms of CPU a request
on work that costs about 0.1 ms alone, and the gateway's CPU per request fell from 1.00-1.10 to
0.88-0.99 ms without it (``bench.cost``; bench/findings.md, the eleventh session).

The loop never waits on a lock: while the writer's connection or SQLite's write lock is taken (the
checkpointer's WAL restart, an admin write on a worker thread, another process), the commit comes
back ``BUSY_RETRY_SECONDS`` later. After ``BUSY_TIMEOUT_MS`` of that, the writes fail, as a writer
thread's would have after waiting that long in SQLite's busy handler.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from glasskey.store.database import BUSY_TIMEOUT_MS, WriteLockBusy

J = TypeVar("J")
BUSY_RETRY_SECONDS = 0.001


class LoopCommits(Generic[J]):
    """The writes each event loop has queued, and the callback that commits them on that loop."""

    def __init__(self, conn_lock: threading.Lock, commit: Callable[[list[J], bool], object], max_batch: int) -> None:
        self.conn_lock = conn_lock  # the writer's connection, also the checkpointer's WAL restart
        self.commit = commit  # one group commit of the jobs given; ``WriteLockBusy`` unless told to wait
        self.max_batch = max_batch
        self._jobs: dict[asyncio.AbstractEventLoop, list[J]] = {}
        self._busy_since = math.inf  # since when SQLite's write lock has been busy

    def queued(self, loop: asyncio.AbstractEventLoop) -> bool:
        return bool(self._jobs.get(loop))

    def queue(self, loop: asyncio.AbstractEventLoop, job: J) -> None:
        jobs = self._jobs.get(loop)
        if jobs is None:
            for old in [old for old in self._jobs if old.is_closed()]:  # tests run loop after loop
                del self._jobs[old]
            jobs = self._jobs[loop] = []
        jobs.append(job)
        if len(jobs) == 1:  # the first since the last commit: one is due once the ready callbacks ran
            loop.call_soon(self._run, loop)

    def drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """Commit what ``loop`` has queued now, waiting for the locks (the writer is closing)."""
        self._busy_since = -math.inf
        while self._jobs.get(loop):
            with self.conn_lock:
                self._commit_some(self._jobs[loop])

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        jobs = self._jobs.get(loop)
        if not jobs:
            return
        if not self.conn_lock.acquire(blocking=False):
            loop.call_later(BUSY_RETRY_SECONDS, self._run, loop)
            return
        try:
            self._commit_some(jobs)
        except WriteLockBusy:  # another write of this process or another process: the jobs are back
            loop.call_later(BUSY_RETRY_SECONDS, self._run, loop)
            return
        finally:
            self.conn_lock.release()
        if jobs:  # more than one batch's worth was queued
            loop.call_soon(self._run, loop)

    def _commit_some(self, jobs: list[J]) -> None:
        """One group commit of up to ``max_batch`` of ``jobs``, taken off the list; put back if
        SQLite's write lock is busy, unless it has been for ``BUSY_TIMEOUT_MS``."""
        taken = jobs[: self.max_batch]
        del jobs[: len(taken)]
        try:
            self.commit(taken, self._busy_since + BUSY_TIMEOUT_MS / 1000 < time.monotonic())
        except WriteLockBusy:
            jobs[:0] = taken
            self._busy_since = min(self._busy_since, time.monotonic())
            raise
        self._busy_since = math.inf
