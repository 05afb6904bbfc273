"""Statements of the request path run on the database driver's own connection.

Every request writes a handful of small statements (its hold, its settlement, its receipt).
Through SQLAlchemy's execution machinery each costs about 100 µs of Python in the writer
thread — ten times what SQLite takes to run it — and that Python holds the GIL the event loop
needs. A ``DriverStatement`` is written once in SQL with ``:name`` parameters, translated once
per dialect to the driver's parameter style, and run on the DB-API connection underneath the
SQLAlchemy ``Connection``, inside the same transaction. Values of typed columns (timestamps,
JSON) go through SQLAlchemy's own bind processors for the column type, so rows written here
read back exactly like rows written through SQLAlchemy.

On PostgreSQL each statement is a round trip. A write that needs no answer before the others have
run sends its statement through its ``store.batch.Batch`` instead: the statements of a group commit
go to the server together in one pipeline (one wait), and each write reads its ``Sent`` answer
afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine

_PARAM = re.compile(r"(?<![:\w]):(\w+)")
_STYLE = {"named": r":\1", "pyformat": r"%(\1)s"}

Processor = Callable[[Any], Any]


def driver_connection(conn: Connection) -> Any:
    """The DB-API connection under ``conn`` (inside its open transaction)."""
    driver = conn.connection.driver_connection
    if driver is None:
        raise RuntimeError("the connection has no driver connection (it was closed)")
    return driver


class DriverStatement:
    """One SQL statement with ``:name`` parameters, run on the DB-API connection."""

    def __init__(self, sql: str, types: Mapping[str, TypeEngine[Any]] | None = None) -> None:
        self.sql = sql
        self.types = dict(types or {})
        self._compiled: dict[str, tuple[str, dict[str, Processor]]] = {}

    def _compile(self, dialect: Dialect) -> tuple[str, dict[str, Processor]]:
        style = "named" if dialect.name == "sqlite" else dialect.paramstyle
        if style not in _STYLE:
            raise NotImplementedError(f"driver statements do not support the {style!r} parameter style")
        processors: dict[str, Processor] = {}
        for name, type_ in self.types.items():
            process = type_.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                processors[name] = process
        compiled = (_PARAM.sub(_STYLE[style], self.sql), processors)
        self._compiled[dialect.name] = compiled
        return compiled

    def prepared(self, conn: Connection, params: dict[str, Any]) -> str:
        """The SQL for ``conn``'s dialect; ``params`` are converted in place."""
        sql, processors = self._compiled.get(conn.dialect.name) or self._compile(conn.dialect)
        for name, process in processors.items():
            if params[name] is not None:
                params[name] = process(params[name])
        return sql

    def execute(self, conn: Connection, params: dict[str, Any], driver: Any = None) -> Any:
        """Run on ``conn``'s driver connection (its open transaction); returns the DB-API cursor.

        ``driver`` is that connection when the caller has it already (a ``Batch`` keeps it)."""
        sql = self.prepared(conn, params)
        return (driver or driver_connection(conn)).execute(sql, params)

    def executemany(self, conn: Connection, rows: list[dict[str, Any]], driver: Any = None) -> None:
        """Run once per row of ``rows``, in one driver call (one round trip where the driver can)."""
        if len(rows) <= 1:
            if rows:  # one row needs no cursor of its own (a lone request's batch: every group)
                self.execute(conn, rows[0], driver)
            return
        sql = ""
        for row in rows:
            sql = self.prepared(conn, row)
        cursor = (driver or driver_connection(conn)).cursor()
        try:
            cursor.executemany(sql, rows)
        finally:
            cursor.close()


class Sent:
    """A statement sent through a ``Batch``; its DB-API cursor once it has run."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: Any = None) -> None:
        self._cursor = cursor

    @property
    def cursor(self) -> Any:
        if self._cursor is None:
            raise RuntimeError("the statement was sent but its pipeline was never flushed")
        return self._cursor

    @cursor.setter
    def cursor(self, cursor: Any) -> None:
        self._cursor = cursor
