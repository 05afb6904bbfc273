"""Identifiers: short, prefixed, random, and safe to show (none of them is a secret)."""

from __future__ import annotations

import os
import threading

_ID_BYTES = 12
_POOL_IDS = 256

_pool = b""
_offset = 0
_lock = threading.Lock()


def _random_bytes() -> bytes:
    """12 bytes from the OS's CSPRNG, read 256 ids at a time.

    ``os.urandom`` releases the GIL around its system call; on the request path every such
    release lets the writer thread take the GIL, and the event loop waits to get it back. One
    read per 256 ids makes that wait rare.
    """
    global _pool, _offset
    with _lock:
        if _offset + _ID_BYTES > len(_pool):
            _pool = os.urandom(_ID_BYTES * _POOL_IDS)
            _offset = 0
        chunk = _pool[_offset : _offset + _ID_BYTES]
        _offset += _ID_BYTES
        return chunk


def _forget_pool() -> None:
    # A forked child must not hand out the ids its parent will hand out too.
    global _pool, _offset
    _pool, _offset = b"", 0


os.register_at_fork(after_in_child=_forget_pool)


def new_id(prefix: str) -> str:
    """``new_id("req") -> "req_5f0c2a9e1b7d4c3a8e6f1d2c"`` (96 random bits)."""
    return f"{prefix}_{_random_bytes().hex()}"
