"""Profile glasskey's hot path under load: py-spy records the gateway while the raw client loads it.

    python -m bench.profile                       # c=64, 8 s, SQLite, non-streaming
    python -m bench.profile --concurrency 16 --stream --out /tmp/profile.svg
    python -m bench.profile --postgres --thread glasskey-writer

It starts the 0 ms fake upstream and a seeded glasskey on SQLite (or PostgreSQL), as ``bench.run`` does, warms up,
then runs ``py-spy record`` on the gateway's process (all threads, including the writer) for the
measured load. The output is a flame graph (``.svg``) or, with ``--format raw``, collapsed stacks
that ``--top`` summarises as the functions holding most samples.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from bench.load import LoadResult, LoadSpec, run_load_sync
from bench.procs import Processes
from bench.seed import drop_postgres_database
from bench.targets import MODELS, seed_glasskey, start_glasskey, start_upstreams

IDLE_FRAMES = ("Condition.wait", "select (selectors", "_run_once (asyncio/base_events.py:1", "Queue.get")


def top_functions(collapsed: Path, limit: int, thread: str) -> list[tuple[str, float, float]]:
    """(function, self share, inclusive share) of one thread's samples, busiest first.

    Samples of a thread waiting on a lock or queue are dropped: they are idle time, not work.
    """
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = stack.split(";")
        if thread not in frames[0] or any(idle in frames[-1] for idle in IDLE_FRAMES):
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    return [(name, own[name] / total, inclusive[name] / total) for name, _ in inclusive.most_common(limit)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--format", choices=("flamegraph", "raw"), default="raw")
    parser.add_argument("--out", type=Path, default=Path("bench/results/profile.txt"))
    parser.add_argument("--top", type=int, default=40, help="functions to print (raw format)")
    parser.add_argument("--thread", default="MainThread", help="whose samples --top summarises")
    parser.add_argument("--native", action="store_true", help="include C frames (slower sampling)")
    parser.add_argument("--postgres", action="store_true", help="glasskey on a fresh PostgreSQL database")
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="glasskey-profile-") as tmp:
        procs = Processes(Path(tmp) / "logs")
        try:
            result = _profile(procs, Path(tmp), args, py_spy)
        finally:
            procs.stop_all()
            if args.postgres:
                drop_postgres_database(f"glasskey_profile_{os.getpid()}")
    print(f"{result.throughput_rps:.1f} req/s, p50 {result.latency_ms.get('p50', 0):.2f} ms, errors {result.errors}")
    print(f"profile: {args.out}")
    if args.format == "raw":
        for name, own, inclusive in top_functions(args.out, args.top, args.thread):
            print(f"{inclusive:6.1%} {own:6.1%}  {name}")


def _profile(procs: Processes, tmp: Path, args: argparse.Namespace, py_spy: str) -> LoadResult:
    upstreams = start_upstreams(procs, [0])
    database = f"glasskey_profile_{os.getpid()}" if args.postgres else None
    target = start_glasskey(procs, seed_glasskey("glasskey", upstreams, tmp, postgres_database=database), [0])
    spec = LoadSpec(
        url=target.url(0),
        model=MODELS[0],
        concurrency=args.concurrency,
        stream=args.stream,
        keys=target.keys,
        requests_max=10_000_000,
        duration_s_max=args.seconds + 2,
    )
    run_load_sync(LoadSpec(**{**spec.__dict__, "duration_s_max": 1.0}))  # warm caches and pools
    record = [
        py_spy,
        "record",
        "--pid",
        str(target.process.pid),
        "--rate",
        str(args.rate),
        "--duration",
        str(int(args.seconds)),
        "--format",
        args.format,
        "--output",
        str(args.out),
        "--threads",
        *(["--native"] if args.native else ["--nonblocking"]),
    ]
    recorder = threading.Thread(target=subprocess.run, args=(record,), kwargs={"check": False})
    recorder.start()
    result = run_load_sync(spec)
    recorder.join()
    return result


if __name__ == "__main__":
    main()
