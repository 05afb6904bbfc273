"""One seeded glasskey and its fake upstream, served until stdin closes: one tree's side of
``bench.compare_trees --interleave``.

    TREE/.venv/bin/python bench/serve_tree.py sqlite|postgres     (PYTHONPATH=TREE)

Run with another checkout's interpreter and that checkout first on ``PYTHONPATH``, it imports that
checkout's ``bench.targets``: each tree seeds and starts glasskey its own way (its own schema and
settings), as ``bench.cost`` does. It prints one JSON line (the gateway's URL, its keys, its process
id), then serves until its standard input closes or it gets SIGTERM, and stops what it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType

from bench.procs import Processes
from bench.seed import drop_postgres_database
from bench.targets import seed_glasskey, start_glasskey, start_upstreams


def main() -> None:
    engine = sys.argv[1]
    database = f"glasskey_tree_{os.getpid()}" if engine == "postgres" else None

    def stop(_signal: int, _frame: FrameType | None) -> None:
        sys.stdin.close()  # the read below returns, and the finally stops everything

    signal.signal(signal.SIGTERM, stop)
    with tempfile.TemporaryDirectory(prefix="glasskey-tree-") as tmp:
        procs = Processes(Path(tmp) / "logs")
        try:
            upstreams = start_upstreams(procs, [0])
            target = start_glasskey(
                procs, seed_glasskey("glasskey", upstreams, Path(tmp), postgres_database=database), [0]
            )
            served = {"url": target.url(0), "keys": list(target.keys), "pid": target.process.pid}
            print(json.dumps(served), flush=True)
            with contextlib.suppress(ValueError):  # ValueError: closed by the signal handler
                sys.stdin.read()
        finally:
            procs.stop_all()
            if database is not None:
                drop_postgres_database(database)


if __name__ == "__main__":
    main()
