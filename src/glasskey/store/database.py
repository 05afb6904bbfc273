"""The database engine: SQLite (embedded default) or PostgreSQL, with one way to read and one to write.

SQLite allows one writer at a time. Write transactions start with ``BEGIN IMMEDIATE`` so the
write lock is taken up front (no deadlock-prone lock upgrades), and writers in one process queue
on a lock instead of spinning in SQLite's busy handler. PostgreSQL needs neither: every
balance-changing statement is a single conditional ``UPDATE`` that takes the row lock.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Transaction, create_engine, event
from sqlalchemy.engine import make_url

from glasskey.errors import GlasskeyError
from glasskey.store.driver import driver_connection
from glasskey.store.tables import metadata

BUSY_TIMEOUT_MS = 30_000
# What SQLite truncates its WAL file back to once the WAL starts over (store.writer restarts it).
WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024
# The execution option that marks a connection's transactions as writes (SQLite then takes the
# write lock up front, with BEGIN IMMEDIATE).
WRITE_OPTION = "glasskey_write"
# The execution option carrying the audit chain's MAC key (``people.audit.CHAIN_KEY_OPTION``).
AUDIT_CHAIN_KEY_OPTION = "glasskey_audit_chain_key"


T = TypeVar("T")


class WriteLockBusy(GlasskeyError):
    """SQLite's write lock is held elsewhere; a caller that must not wait for it comes back later."""

    def __init__(self, message: str = "SQLite's write lock is held by another write") -> None:
        super().__init__(message)


class Database:
    """Owns the engine; domain functions receive a ``Connection`` from ``read()`` or ``write()``."""

    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        audit_chain_key: bytes | None = None,
        pool_size: int = 10,
        pool_overflow: int = 20,
    ) -> None:
        parsed = make_url(url)
        self.url = url
        self.dialect = parsed.get_backend_name()
        self._write_lock: threading.Lock | None = None
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.dialect == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            self._write_lock = threading.Lock()
        else:
            # Each process keeps ``pool_size`` connections and opens up to ``pool_overflow`` more under
            # load: PostgreSQL's max_connections must fit every process's sum (docs/deployment.md).
            kwargs.update(pool_size=pool_size, max_overflow=pool_overflow, pool_pre_ping=True)
        self.engine: Engine = create_engine(url, **kwargs)
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine)
        if audit_chain_key is not None:
            # Every connection then carries the audit chain's MAC key (people.audit reads it):
            # the key travels with the database it signs, never through a global.
            self.engine = self.engine.execution_options(**{AUDIT_CHAIN_KEY_OPTION: audit_chain_key})

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def read_with(self, fn: Callable[[Connection], T]) -> T:
        """``fn`` on a read connection (for a worker thread: the event loop must not wait on it)."""
        with self.read() as conn:
            return fn(conn)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One transaction that commits on success and rolls back on any exception."""
        with self.engine.connect() as conn, self.transaction(conn):
            yield conn

    @contextmanager
    def transaction(self, conn: Connection) -> Iterator[Connection]:
        """A write transaction on a connection the caller keeps open (the group-commit writer's)."""
        transaction = self.begin_write(conn)
        try:
            yield conn
        except BaseException:
            self.end_write(transaction, commit=False)
            raise
        self.end_write(transaction, commit=True)

    @contextmanager
    def kept_transaction(self, conn: Connection, *, wait: bool = True) -> Iterator[Connection]:
        """``transaction`` on a connection its owner keeps for its life (the group-commit writer's).

        With ``wait=False`` (an event loop's commit on SQLite, on a connection whose busy timeout
        is 0), ``WriteLockBusy`` is raised at once, before anything runs, when another write of
        this process or another process holds SQLite's write lock.

        On SQLite it is begun and ended on the driver connection: SQLAlchemy's ``begin`` and
        ``commit`` cost 4.5 µs a transaction over the driver's own (11.2 against 6.7 µs with one
        update), and a lone request runs two (``GroupCommitWriter.submit_alone``). A statement run
        through SQLAlchemy inside it (a refusal's read, a precondition) joins it (``_on_begin``);
        the transaction is then ended through SQLAlchemy, which ends the driver's with it.
        """
        lock = self._write_lock
        if lock is None:
            with self.transaction(conn):
                yield conn
            return
        driver = driver_connection(conn)
        if not lock.acquire(blocking=wait):
            raise WriteLockBusy
        try:
            try:
                driver.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as error:
                if wait or error.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                    raise
                raise WriteLockBusy from None
            try:
                yield conn
            except BaseException:
                if conn.in_transaction():
                    conn.rollback()
                else:
                    driver.rollback()
                raise
            if conn.in_transaction():
                conn.commit()
            else:
                driver.commit()
        finally:
            lock.release()

    def begin_write(self, conn: Connection) -> Transaction:
        """Begin a write transaction on ``conn``.

        Ended by ``end_write``, which the caller must reach on every path (SQLite's process-wide
        write lock is held until then).
        """
        lock = self._write_lock
        if lock is None:
            return conn.begin()
        lock.acquire()
        try:
            # The option stays on this Connection object: every transaction it begins is a write.
            # Set once: setting it again cost 1.5 µs a transaction (two a lone request on SQLite).
            if not conn.get_execution_options().get(WRITE_OPTION):
                conn.execution_options(**{WRITE_OPTION: True})
            return conn.begin()
        except BaseException:
            lock.release()
            raise

    def end_write(self, transaction: Transaction, *, commit: bool) -> None:
        """Commit or roll back a transaction from ``begin_write``, and let the next writer in."""
        try:
            if commit:
                transaction.commit()
            else:
                transaction.rollback()
        finally:
            if self._write_lock is not None:
                self._write_lock.release()

    def create_all(self) -> None:
        """Create every table directly (tests); production uses ``upgrade()`` (Alembic)."""
        metadata.create_all(self.engine)

    def drop_all(self) -> None:
        metadata.drop_all(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # On the driver connection: this runs for every transaction, and through SQLAlchemy's
        # execution machinery the BEGIN alone cost more than a small batch's statements.
        driver = conn.connection.driver_connection
        if driver.in_transaction:  # type: ignore[union-attr]  # begun by Database.kept_transaction
            return
        driver.execute(  # type: ignore[union-attr]
            "BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE_OPTION) else "BEGIN"
        )
