"""SQLite's write-ahead log, kept small beside the group-commit writer.

The writer's connection never checkpoints (``wal_autocheckpoint=0``): SQLite would otherwise
checkpoint inside whichever commit pushes the WAL past 1,000 pages, with an fsync, and one request
in a hundred waited several milliseconds for it. A thread of its own copies the WAL into the
database file every half second instead (a PASSIVE checkpoint never blocks the writer), and
starts the WAL over once it is large.
"""

from __future__ import annotations

import logging
import os
import threading

from sqlalchemy import Connection

from glasskey.store.database import BUSY_TIMEOUT_MS, WAL_SIZE_LIMIT_BYTES, Database

log = logging.getLogger("glasskey.store.checkpoints")
CHECKPOINT_SECONDS = 0.5
# The WAL is started over once it is this large (see ``_restart``). After that, SQLite truncates the
# file back to this size (journal_size_limit), so the disk it takes stays bounded too.
WAL_RESTART_BYTES = WAL_SIZE_LIMIT_BYTES
RESTART_BUSY_MS = 100


class Checkpointer:
    def __init__(self, db: Database, writer_lock: threading.Lock) -> None:
        self.db = db
        self.writer_lock = writer_lock  # held by the writer for its transactions
        self.checkpoint_seconds = CHECKPOINT_SECONDS
        self.wal_restart_bytes = WAL_RESTART_BYTES
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.checkpoints = 0
        self.wal_restarts = 0

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._forever, name="glasskey-checkpointer", daemon=True)
        self._thread.start()

    def stop(self, timeout_seconds: float) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout_seconds)
            self._thread = None

    def _forever(self) -> None:
        while not self._stop.wait(self.checkpoint_seconds):
            try:
                with self.db.engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
                    self.checkpoints += 1
                    if self._wal_bytes() > self.wal_restart_bytes:
                        self._restart(conn)
            except Exception:  # a checkpoint missed is made up by the next one
                log.warning("WAL checkpoint failed", exc_info=True)

    def _wal_bytes(self) -> int:
        try:
            return os.path.getsize(f"{self.db.engine.url.database}-wal")
        except OSError:
            return 0

    def _restart(self, conn: Connection) -> None:
        """Have the next write start the WAL again from its beginning.

        SQLite starts the WAL over only once a checkpoint has copied all of it and no reader still
        uses it. Under steady writes a PASSIVE checkpoint never catches up with the last commit,
        so the WAL (and its index, mapped into the process) grew by about 30 KB per request: 3 GB
        after 100,000 requests. A RESTART checkpoint waits for the readers, with the writer held
        off its connection meanwhile (the PASSIVE one just before has left little to copy); a
        reader slower than its short busy timeout only puts it off to the next round.
        """
        with self.writer_lock:  # the writer's transaction, if one is open, ends first
            conn.exec_driver_sql(f"PRAGMA busy_timeout={RESTART_BUSY_MS}")
            try:
                busy = conn.exec_driver_sql("PRAGMA wal_checkpoint(RESTART)").scalar()
            finally:
                conn.exec_driver_sql(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        if not busy:
            self.wal_restarts += 1
