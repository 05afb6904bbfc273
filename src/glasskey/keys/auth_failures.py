"""The count of failed authentications per client address, public id and minute (``auth_failures``).

Every failed authentication at the gateway is counted here, receipted or not, so the failures page
can say who keeps failing even when a flood has stopped getting receipts. Counts are added up in
memory and written at most once a second (``flush_interval_seconds``), one row per (address,
public id, minute) touched since the last write: a flood of garbage keys costs a row per address
and minute, not a row per request.

Pending counts are bounded (``pending_max``): past it, a new (address, public id) pair is counted
under the address ``(other)``, so memory stays bounded whatever the number of addresses. Counts
not yet written when the process dies are lost (at most one flush interval's worth).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
import anyio.to_thread
from sqlalchemy import Connection, func, insert, select, update

from glasskey.store.database import Database
from glasskey.store.tables import auth_failures

log = logging.getLogger("glasskey.auth_failures")
ADDRESS_MAX_LENGTH = 64
OTHER_ADDRESSES = "(other)"
UNKNOWN_ADDRESS = "(unknown)"

Pending = dict[tuple[str, str | None, datetime], int]


def minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def add_counts(conn: Connection, counts: Pending) -> None:
    """Add ``counts`` to the table: the row of each (address, public id, minute) grows, or is made."""
    for (address, public_id, minute), count in counts.items():
        same = (
            (auth_failures.c.address == address)
            & (auth_failures.c.minute == minute)
            & (auth_failures.c.public_id.is_(None) if public_id is None else auth_failures.c.public_id == public_id)
        )
        updated = conn.execute(update(auth_failures).where(same).values(count=auth_failures.c.count + count))
        if updated.rowcount == 0:
            conn.execute(insert(auth_failures).values(address=address, public_id=public_id, minute=minute, count=count))


@dataclass(frozen=True)
class FailureCount:
    name: str | None
    count: int
    last_minute: datetime


def counts_by(conn: Connection, since: datetime | None, *, by: str, limit: int = 20) -> list[FailureCount]:
    """The most frequent failing addresses (``by="address"``) or public ids (``by="public_id"``)."""
    column = auth_failures.c.address if by == "address" else auth_failures.c.public_id
    query = select(column, func.sum(auth_failures.c.count), func.max(auth_failures.c.minute)).group_by(column)
    if since is not None:
        query = query.where(auth_failures.c.minute >= minute_of(since))
    if by == "public_id":
        query = query.where(auth_failures.c.public_id.is_not(None))
    rows = conn.execute(query.order_by(func.sum(auth_failures.c.count).desc(), column).limit(limit))
    return [FailureCount(name=row[0], count=int(row[1]), last_minute=row[2]) for row in rows]


def total_failures(conn: Connection, since: datetime | None) -> int:
    query = select(func.coalesce(func.sum(auth_failures.c.count), 0))
    if since is not None:
        query = query.where(auth_failures.c.minute >= minute_of(since))
    return int(conn.scalar(query) or 0)


class AuthFailureLog:
    """Counts failed authentications in memory and writes them in the background, once a second."""

    def __init__(
        self,
        db: Database,
        clock: Callable[[], datetime],
        *,
        flush_interval_seconds: float = 1.0,
        pending_max: int = 10_000,
    ) -> None:
        self.db = db
        self.clock = clock
        self.flush_interval_seconds = flush_interval_seconds
        self.pending_max = pending_max
        self._pending: Pending = {}
        self._flushing: asyncio.Task[None] | None = None
        self.write_failures = 0

    def add(self, address: str | None, public_id: str | None) -> None:
        """Count one failure now; a write is scheduled if none is."""
        name = (address or UNKNOWN_ADDRESS)[:ADDRESS_MAX_LENGTH]
        entry = (name, public_id, minute_of(self.clock()))
        if entry not in self._pending and len(self._pending) >= self.pending_max:
            entry = (OTHER_ADDRESSES, None, entry[2])
        self._pending[entry] = self._pending.get(entry, 0) + 1
        if self._flushing is None:
            self._flushing = asyncio.get_running_loop().create_task(self._flush_later())

    @property
    def pending(self) -> int:
        return sum(self._pending.values())

    async def _flush_later(self) -> None:
        try:
            # Counts added while a write was under way wait for the next turn, not for the next failure.
            while True:
                await anyio.sleep(self.flush_interval_seconds)
                await self.flush()
                if not self._pending:
                    return
        finally:
            self._flushing = None

    async def flush(self) -> None:
        """Write every pending count now (tests, shutdown). A failed write keeps its counts pending."""
        counts, self._pending = self._pending, {}
        if not counts:
            return

        def write() -> None:
            with self.db.write() as conn:
                add_counts(conn, counts)

        try:
            await anyio.to_thread.run_sync(write)
        except Exception:  # the database is down: keep the counts for the next write, within the bound
            self.write_failures += 1
            log.warning("could not write %d failed-authentication counts; kept for the next try", len(counts))
            for entry, count in counts.items():
                if entry in self._pending or len(self._pending) < self.pending_max:
                    self._pending[entry] = self._pending.get(entry, 0) + count

    async def aclose(self) -> None:
        if self._flushing is not None:
            self._flushing.cancel()
            self._flushing = None
        await self.flush()


def summary(conn: Connection, since: datetime | None) -> dict[str, Any]:
    """What the failures page shows: the total and the top addresses and public ids."""
    return {
        "total": total_failures(conn, since),
        "by_address": counts_by(conn, since, by="address"),
        "by_public_id": counts_by(conn, since, by="public_id"),
    }
