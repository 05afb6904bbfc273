"""A ``Batch``: the transaction a write runs in, and what each of its statements does with it.

Ledger, budget and receipt functions take a batch as their first argument and say, by the
method they call, what happens to each statement:

* ``execute``: run now, answered now (a conditional update whose answer decides the next step);
* ``send``: run with the batch's pipeline (PostgreSQL: every write of a group commit sends its
  statements, the writer flushes them as one pipeline, one wait for the server), or at once where
  there is no pipeline; its answer is the returned ``Sent``, read after ``flush``;
* ``increment`` and ``insert``: writes that need no answer, applied once at the end of the batch
  (the increments of one row summed into one ``UPDATE``, the inserts of one table in one
  ``executemany``; on PostgreSQL all of a group commit's in one pipeline), or at once outside the
  writer. An increment is refused only by an overflow of its counter (``ledger.bounds``: the NOT
  NULL column refuses the NULL its statement computes then), which its write gets as
  ``limits.counter_overflow`` (``value_too_large``) naming the counter, at the end of the batch as
  at once (in a pipeline the batch fails instead, and the writer's retry of each write alone names
  it).

``Batch.now(conn)`` is the batch of a caller outside the writer (the CLI, the sweep, the admin
API, tests): everything runs at once on its connection. The group-commit writer gives each write
its own ``job()`` view of one batch, so a write that fails drops its deferred writes with it.

Only writes that nothing in the same batch reads back may be deferred: a batch reads wallet
balances and pending transfers, never a revenue account or a receipt. It reads a key's budget only
to check a key that has one, and then conservatively: a deferred settlement only ever lowers what
is held and spent together.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from sqlalchemy import Connection

from glasskey.limits import counter_overflow
from glasskey.store.driver import DriverStatement, Sent, driver_connection

Keys = tuple[tuple[str, Any], ...]


class Deferred:
    """The increments and inserts of one write or one batch, not yet applied."""

    def __init__(self) -> None:
        self.increments: dict[tuple[DriverStatement, Keys], dict[str, int]] = {}
        # What each incremented row's counters are, for the refusal of an overflow.
        self.counted: dict[tuple[DriverStatement, Keys], str] = {}
        self.inserts: dict[DriverStatement, list[dict[str, Any]]] = {}

    def add(self, statement: DriverStatement, keys: dict[str, Any], amounts: dict[str, int], what: str) -> None:
        row = (statement, tuple(keys.items()))
        sums = self.increments.get(row)
        if sums is None:
            self.increments[row] = dict(amounts)
            self.counted[row] = what
            return
        for name, amount in amounts.items():
            sums[name] += amount

    def insert(self, statement: DriverStatement, row: dict[str, Any]) -> None:
        self.inserts.setdefault(statement, []).append(row)

    def merge(self, other: Deferred) -> None:
        """Take over ``other``'s writes (it is left empty). Its rows keep their keys and sums as they
        are: re-adding each through ``add`` (a new key tuple and sums per row) made two ``add`` calls
        of every increment, about 8 per request in the writer thread at c=16."""
        increments, counted = self.increments, self.counted
        for row, amounts in other.increments.items():
            sums = increments.get(row)
            if sums is None:
                increments[row] = amounts
                counted[row] = other.counted[row]
            else:
                for name, amount in amounts.items():
                    sums[name] += amount
        for statement, rows in other.inserts.items():
            self.inserts.setdefault(statement, []).extend(rows)
        other.increments, other.counted, other.inserts = {}, {}, {}

    def apply(self, conn: Connection, driver: Any = None, *, pipeline: bool = False) -> None:
        """Run the increments, then the inserts. With ``pipeline`` (PostgreSQL), every statement goes
        to the server in one pipeline, one wait for all; an overflow is then an ``IntegrityError``
        for the whole batch, which the writer retries write by write, each applied without a
        pipeline so that its refusal names the counter that overflowed."""
        # One order for every process (key budgets, then accounts, each by key), so that two
        # PostgreSQL batches never lock the same rows in opposite orders. The rows of one
        # statement go in one executemany: a single round trip on PostgreSQL (psycopg pipelines it).
        # Written out (no groupby, no generator context manager, the refusal's text only when it
        # is raised): 6.2 -> 3.5 µs for a lone request's transaction, 17.9 -> 13.8 µs for a batch
        # of seven keys (micro-benchmark, the statements themselves left out).
        grouped: dict[DriverStatement, list[tuple[Keys, dict[str, int]]]] = {}
        for row, amounts in sorted(self.increments.items(), key=_row_order):
            grouped.setdefault(row[0], []).append((row[1], amounts))
        # With ``pipeline``: each statement is otherwise a wait of its own (a row alone is one execute, several rows
        # one executemany: a pipeline of its own): a group commit's budgets, accounts and receipts
        # took three round trips. In one pipeline, measured on this machine's PostgreSQL
        # (Deferred.apply of two increments and an insert per write, medians of 200 alternating
        # runs): one write 587 -> 379 µs of wait, 262 -> 245 µs of CPU; eight writes 1,041 ->
        # 728 µs of wait, 728 -> 596 µs of CPU.
        with (driver or driver_connection(conn)).pipeline() if pipeline else nullcontext():
            for statement, rows in grouped.items():
                try:
                    statement.executemany(conn, [{**dict(keys), **amounts} for keys, amounts in rows], driver)
                except conn.dialect.dbapi.IntegrityError:  # type: ignore[union-attr]
                    if pipeline:  # the error may be an earlier statement's: the batch fails instead
                        raise
                    raise counter_overflow(" and ".join(self.counted[statement, keys] for keys, _ in rows)) from None
            for statement, inserted in self.inserts.items():
                statement.executemany(conn, inserted, driver)
        self.increments.clear()
        self.counted.clear()
        self.inserts.clear()


@contextmanager
def _overflow_refused(conn: Connection, what: str) -> Iterator[None]:
    """The NOT NULL refusal of an increment's overflow (the only refusal an increment has) raised as
    ``counter_overflow(what)``, as ``Deferred.apply`` raises it. In a batch, the transaction is then
    rolled back by the writer and its writes retried one by one, so it is the guilty write alone
    that fails with it."""
    try:
        yield
    except conn.dialect.dbapi.IntegrityError:  # type: ignore[union-attr]
        raise counter_overflow(what) from None


def _row_order(item: tuple[tuple[DriverStatement, Keys], dict[str, int]]) -> tuple[str, str]:
    (statement, keys), _ = item
    return statement.sql, repr(keys)


class Pipeline:
    """The statements the writes of one batch ``send``, run together when the writer flushes them."""

    def __init__(self) -> None:
        self.statements: list[tuple[Sent, str, dict[str, Any]]] = []

    def flush(self, conn: Connection) -> None:
        """Run every statement sent, in the order sent, waiting once for all their answers.

        An error in any of them raises here, and the statements after it did not run: the
        transaction can only be rolled back (the writer then retries its writes one by one).
        """
        if not self.statements:
            return
        statements, self.statements = self.statements, []
        driver = driver_connection(conn)
        with driver.pipeline():
            for sent, sql, params in statements:
                sent.cursor = driver.execute(sql, params)


class Batch:
    """One transaction's connection, with where its sent and deferred statements go."""

    __slots__ = ("conn", "driver", "pipeline", "writes")

    def __init__(
        self,
        conn: Connection,
        *,
        pipeline: Pipeline | None = None,
        writes: Deferred | None = None,
        driver: Any = None,
    ) -> None:
        self.conn = conn
        self.pipeline = pipeline
        self.writes = writes
        # The DB-API connection under ``conn``, looked up once for the group commit's statements
        # (through three SQLAlchemy properties it cost about 1 µs each time, 4-9 times a request).
        self.driver = driver

    @classmethod
    def now(cls, conn: Connection) -> Batch:
        """A caller outside the writer: every statement runs at once, in the caller's transaction."""
        return cls(conn)

    @classmethod
    def of(cls, target: Connection | Batch) -> Batch:
        """``target`` itself, or the batch of a caller outside the writer on that connection."""
        return target if isinstance(target, Batch) else cls(target)

    @classmethod
    def group(cls, conn: Connection) -> Batch:
        """The batch of one group commit: a pipeline on PostgreSQL, deferred writes everywhere."""
        pipeline = Pipeline() if conn.dialect.name == "postgresql" else None
        return cls(conn, pipeline=pipeline, writes=Deferred(), driver=driver_connection(conn))

    def job(self) -> Batch:
        """A view for one write: the same transaction and pipeline, deferred writes of its own."""
        writes = Deferred() if self.writes is not None else None
        return Batch(self.conn, pipeline=self.pipeline, writes=writes, driver=self.driver)

    def execute(self, statement: DriverStatement, params: dict[str, Any]) -> Any:
        """Run now and answer now; returns the DB-API cursor."""
        return statement.execute(self.conn, params, self.driver)

    def send(self, statement: DriverStatement, params: dict[str, Any]) -> Sent:
        """Run with the batch's pipeline if it has one, else at once; the answer is ``Sent.cursor``."""
        if self.pipeline is None:
            return Sent(statement.execute(self.conn, params, self.driver))
        sent = Sent()
        self.pipeline.statements.append((sent, statement.prepared(self.conn, params), params))
        return sent

    def increment(self, statement: DriverStatement, keys: dict[str, Any], amounts: dict[str, int], what: str) -> None:
        """A bounded increment of one row (``ledger.bounds.bounded_sum``): at the end of the batch,
        summed with its others. ``what`` names its counters in the refusal of an overflow."""
        if self.writes is not None:
            self.writes.add(statement, keys, amounts, what)
            return
        # At once, under a savepoint: PostgreSQL would otherwise abort the caller's transaction.
        with _overflow_refused(self.conn, what), self.conn.begin_nested():
            statement.execute(self.conn, {**keys, **amounts}, self.driver)

    def insert(self, statement: DriverStatement, row: dict[str, Any]) -> None:
        """An insert nothing in the batch reads back: at the end of the batch, in one executemany."""
        if self.writes is None:
            statement.execute(self.conn, row, self.driver)
        else:
            self.writes.insert(statement, row)

    def flush(self) -> None:
        if self.pipeline is not None:
            self.pipeline.flush(self.conn)

    def keep(self, job: Batch) -> None:
        """A write of this batch succeeded: its deferred writes join the batch's."""
        if self.writes is not None and job.writes is not None:
            self.writes.merge(job.writes)

    def apply(self, *, pipeline: bool = False) -> None:
        """Run the batch's deferred writes; ``pipeline``: in one pipeline where the batch has one
        (``Deferred.apply``), for a group commit whose failure is retried write by write."""
        if self.writes is not None:
            self.writes.apply(self.conn, self.driver, pipeline=pipeline and self.pipeline is not None)
