"""The data directory and the SQLite files in it: readable by the gateway's own user only.

The directory holds the database (every key hash, receipt and sealed route credential) and, in
demo mode, ``glasskey.toml`` with the admin token, the key pepper and the encryption key. So it
is made ``0700`` and the database file ``0600`` before the engine first opens it; SQLite gives
the ``-wal``, ``-shm`` and ``-journal`` files it creates later the database file's own mode.
Files left with wider modes by an older version are narrowed at every start.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600
DATABASE_FILE = "glasskey.db"
# Every file SQLite keeps beside the database, and the demo's settings.
PRIVATE_FILES = (
    DATABASE_FILE,
    f"{DATABASE_FILE}-wal",
    f"{DATABASE_FILE}-shm",
    f"{DATABASE_FILE}-journal",
    "glasskey.toml",
)

log = logging.getLogger("glasskey.data_dir")


def prepare_data_dir(data_dir: Path, *, create_database: bool) -> None:
    """Create ``data_dir`` (0700) and, when asked, an empty database file (0600); narrow what exists.

    A directory or file owned by another user cannot be narrowed: that is logged, not fatal,
    because the operator may have arranged access deliberately (a shared group, a volume).
    """
    data_dir.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    _narrow(data_dir, DIRECTORY_MODE)
    if create_database:
        # O_CREAT with 0600, so the file never exists with the umask's wider mode, not even briefly.
        os.close(os.open(data_dir / DATABASE_FILE, os.O_WRONLY | os.O_CREAT, FILE_MODE))
    for name in PRIVATE_FILES:
        path = data_dir / name
        if path.exists():
            _narrow(path, FILE_MODE)


def _narrow(path: Path, mode: int) -> None:
    current = path.stat().st_mode & 0o777
    if current & ~mode == 0:
        return
    try:
        path.chmod(mode)
    except PermissionError:
        log.warning("%s has mode %o and cannot be narrowed to %o by this user", path, current, mode)
