"""Who is alive on PostgreSQL, at once: each serving process holds an advisory lock for its lifetime.

Heartbeats (``gateway.instances``) tell a dead process only after three missed beats (30 s). A
process that dies, though, loses its database connections with it, and PostgreSQL releases the
session-level locks they held at that moment. So each serving process takes
``pg_advisory_lock(key of its instance id)`` on a connection of its own, kept for its lifetime
(``LivenessLock``), and any other process can ask ``pg_try_advisory_lock`` whether the holder is
still there: when it gets the lock, the holder is gone (it gives it back at once). Heartbeats stay
the fallback for a process that hangs with its connection open.

A lock can also be found free while its holder lives: its connection dropped (PostgreSQL
restarted, a network cut) and it has not taken the lock again yet. Every process checks its own
lock each ``CHECK_SECONDS`` and takes it again, so a running process judges another dead only
when its lock was free at two checks at least ``FREE_FOR_SECONDS`` apart (``Watch``). At
start-up one sighting is enough: the process is new, nothing it sees is a passing drop it lived
through, and the holds of a killed predecessor are voided before the first request.

The lock keys live in the database's one advisory-lock space (not per schema): a key is the
first 63 bits of a BLAKE2b hash of the instance id, which is random, so keys never meet.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, create_engine, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from glasskey.gateway import instances
from glasskey.store import tables
from glasskey.store.database import Database

log = logging.getLogger(__name__)

CHECK_SECONDS = 1.0
FREE_FOR_SECONDS = 1.0


def lock_key(instance_id: str) -> int:
    """The advisory lock key of an instance: a signed 64-bit integer, as PostgreSQL takes it."""
    digest = hashlib.blake2b(instance_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# The lock's connection notices a dead peer within seconds (libpq's TCP options), so a process
# cut off and back takes its lock again at once instead of after the kernel's retransmissions
# (minutes): until it does, others see its lock free.
LOCK_CONNECTION_OPTIONS = {
    "keepalives": 1,
    "keepalives_idle": 2,
    "keepalives_interval": 1,
    "keepalives_count": 2,
    "tcp_user_timeout": 3000,
    "connect_timeout": 3,
}


class LivenessLock:
    """This process's advisory lock, on a connection of its own, and the probe of the others' locks.

    Only for PostgreSQL. The connection runs in autocommit, so it never holds a transaction (nor
    a snapshot) open for the process's lifetime; the lock is session-level and survives commits.
    It is taken with ``pg_try_advisory_lock``, never waited for: after a network cut, the old
    session may still hold it on the server for a while, which tells the others the same thing.
    Used from one thread at a time (the app's liveness loop)."""

    def __init__(self, db: Database, instance_id: str) -> None:
        self.instance_id = instance_id
        self.key = lock_key(instance_id)
        self._engine = create_engine(db.url, poolclass=NullPool, connect_args=LOCK_CONNECTION_OPTIONS)
        self._conn: Connection | None = None
        self._held = False

    def hold(self) -> bool:
        """Hold the lock (on a new connection if the old one dropped); whether it was taken now."""
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT 1"))
            except DBAPIError:
                log.warning("the liveness lock's connection dropped; taking the lock again")
                self._close()
        if self._held and self._conn is not None:
            return False
        if self._conn is None:
            self._conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        self._held = bool(self._conn.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}))
        return self._held

    def free(self, instance_ids: Iterable[str]) -> set[str]:
        """Those of ``instance_ids`` whose lock nobody holds (their process is gone)."""
        assert self._conn is not None, "hold() first"
        free = set()
        for instance_id in instance_ids:
            key = lock_key(instance_id)
            if self._conn.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}):
                self._conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                free.add(instance_id)
        return free

    def others(self) -> list[str]:
        """The other registered instances."""
        assert self._conn is not None, "hold() first"
        return list(self._conn.scalars(select(tables.instances.c.id).where(tables.instances.c.id != self.instance_id)))

    def release(self) -> None:
        """Give the lock up (the session ends with its connection), for good."""
        self._close()
        self._engine.dispose()

    def _close(self) -> None:
        self._held = False
        if self._conn is not None:
            with contextlib.suppress(DBAPIError):  # a dropped connection may fail to close: it is gone
                self._conn.close()  # no pool: the session, and the lock with it, ends here
            self._conn = None


class Watch:
    """Which instances a running process may take for dead: their lock free at two checks
    ``free_for_seconds`` apart. Holds the first time each was seen free (monotonic seconds)."""

    def __init__(self, free_for_seconds: float = FREE_FOR_SECONDS) -> None:
        self.free_for_seconds = free_for_seconds
        self._free_since: dict[str, float] = {}

    def dead(self, free_now: set[str], now_seconds: float) -> set[str]:
        """Given the instances whose lock is free now, those free long enough to be dead."""
        # Bounded by the number of registered instances: an id not free now is forgotten.
        self._free_since = {instance_id: self._free_since.get(instance_id, now_seconds) for instance_id in free_now}
        return {
            instance_id
            for instance_id, since in self._free_since.items()
            if now_seconds - since >= self.free_for_seconds
        }

    def forget(self, instance_ids: Iterable[str]) -> None:
        for instance_id in instance_ids:
            self._free_since.pop(instance_id, None)


def start(db: Database, lock: LivenessLock, instance_id: str, now: datetime) -> int:
    """Take this process's lock, register it, and void the holds of every instance found dead: by
    its heartbeats, or by its lock at this one sighting (see the module's docstring); how many."""
    lock.hold()  # before registering: a registered instance always has its lock held
    return instances.start(db, instance_id, now, also_dead=lock.free(lock.others()))


@dataclass(frozen=True)
class Verdict:
    """What one check found: the instances it took for dead (their rows are gone, so their research
    jobs are claimable from now on) and how many of their holds it voided."""

    dead: frozenset[str]
    voided: int


def check(
    db: Database, lock: LivenessLock, watch: Watch, instance_id: str, now: datetime, now_seconds: float
) -> Verdict:
    """One check of a running process: hold its own lock again if it dropped, and void the holds of
    the instances whose lock stayed free (``watch``). Each dead instance is in one verdict only:
    its row is removed, so later checks no longer list it."""
    lock.hold()
    dead = watch.dead(lock.free(lock.others()), now_seconds)
    if not dead:
        return Verdict(frozenset(), 0)
    voided = instances.void_all(db, instance_id, now, also_dead=dead)
    watch.forget(dead)
    return Verdict(frozenset(dead), voided)
