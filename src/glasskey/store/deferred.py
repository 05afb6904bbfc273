"""Writes a group commit applies once per batch instead of once per request.

Some writes of the request path need no answer and cannot be refused: crediting a system
account (revenue has no floor), a key's budget counters (moving held to spent; holding too, for
a key without a budget to check), inserting a receipt. Inside the group-commit writer, such
writes are collected per job and applied once, just before the commit: the increments of one
row are summed into one ``UPDATE``, the inserts of one table go in one ``executemany``. A job
that fails leaves nothing behind, as its savepoint does for its immediate writes. Outside the
writer (tests, the CLI, the sweep) the same calls run at once.

Only writes that nothing in the same batch reads back may be deferred: a batch reads wallet
balances and pending transfers, never a revenue account or a receipt. It reads a key's budget
only to check a key that has one, and then conservatively: a deferred settlement only ever lowers
what is held and spent together.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

from sqlalchemy import Connection

from glasskey.store.driver import DriverStatement

# The collector of the current thread: only the writer thread sets one, and it writes on its own
# connection alone. (A thread-local costs nothing next to ``Connection.info``, which SQLAlchemy
# resolves through the pool on every access.)
_current = threading.local()

Keys = tuple[tuple[str, Any], ...]


class Deferred:
    """The increments and inserts of one job or one batch, not yet applied."""

    def __init__(self) -> None:
        self.increments: dict[tuple[DriverStatement, Keys], dict[str, int]] = {}
        self.inserts: dict[DriverStatement, list[dict[str, Any]]] = {}

    def add(self, statement: DriverStatement, keys: dict[str, Any], amounts: dict[str, int]) -> None:
        sums = self.increments.setdefault((statement, tuple(keys.items())), dict.fromkeys(amounts, 0))
        for name, amount in amounts.items():
            sums[name] += amount

    def insert(self, statement: DriverStatement, row: dict[str, Any]) -> None:
        self.inserts.setdefault(statement, []).append(row)

    def merge(self, other: Deferred) -> None:
        for (statement, keys), amounts in other.increments.items():
            self.add(statement, dict(keys), amounts)
        for statement, rows in other.inserts.items():
            self.inserts.setdefault(statement, []).extend(rows)

    def apply(self, conn: Connection) -> None:
        # One order for every process (key budgets, then accounts, each by key), so that two
        # PostgreSQL batches never lock the same rows in opposite orders. The rows of one
        # statement go in one executemany: a single round trip on PostgreSQL (psycopg pipelines it).
        ordered = sorted(self.increments.items(), key=_row_order)
        for statement, group in itertools.groupby(ordered, key=lambda item: item[0][0]):
            statement.executemany(conn, [{**dict(keys), **amounts} for (_, keys), amounts in group])
        for statement, rows in self.inserts.items():
            statement.executemany(conn, rows)
        self.increments.clear()
        self.inserts.clear()


def _row_order(item: tuple[tuple[DriverStatement, Keys], dict[str, int]]) -> tuple[str, str]:
    (statement, keys), _ = item
    return statement.sql, repr(keys)


def collecting(deferred: Deferred | None) -> None:
    """Collect this thread's deferrable writes into ``deferred`` from now on (None: apply them at once)."""
    _current.deferred = deferred


def increment(conn: Connection, statement: DriverStatement, keys: dict[str, Any], amounts: dict[str, int]) -> None:
    """Run ``statement`` (an unconditional increment of one row) now, or once per batch in the writer."""
    deferred: Deferred | None = getattr(_current, "deferred", None)
    if deferred is None:
        statement.execute(conn, {**keys, **amounts})
    else:
        deferred.add(statement, keys, amounts)


def insert(conn: Connection, statement: DriverStatement, row: dict[str, Any]) -> None:
    """Run ``statement`` (an insert nothing in the batch reads back) now, or in the batch's ``executemany``."""
    deferred: Deferred | None = getattr(_current, "deferred", None)
    if deferred is None:
        statement.execute(conn, row)
    else:
        deferred.insert(statement, row)
