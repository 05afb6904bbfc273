"""CPU per request: what each proxy process (and each of its threads) spends on one request.

    python -m bench.cost                         # bare and glasskey-sqlite, c=1 and c=16, non-streaming
    python -m bench.cost --concurrency 16 --stream --seconds 5
    python -m bench.cost --targets glasskey-sqlite,glasskey-postgres

Throughput on this shared 2-core machine moves with whatever else runs; the CPU time a process
spends per request (user + system, read from /proc before and after the load) moves far less, so
it is the figure to compare when changing the hot path. Threads are listed separately: glasskey's
event loop (the main thread) and, busiest of the others, its group-commit writer.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from bench.load import LoadResult, LoadSpec, run_load_sync
from bench.procs import Processes
from bench.seed import drop_postgres_database
from bench.targets import MODELS, Target, seed_glasskey, start_bare, start_glasskey, start_upstreams

TICKS = os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of each thread of ``pid``; Python does not name OS threads, so the
    main thread (the event loop) is told apart by its id, which is the process id."""
    found: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            comm = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        role = "event loop" if tid == str(pid) else "thread"
        found[f"{comm} {role} {tid}"] = (int(fields[11]) + int(fields[12])) / TICKS
    return found


def load_with_cpu(pid: int, spec: LoadSpec) -> tuple[LoadResult, dict[str, float]]:
    """Run ``spec`` against the process ``pid``, and the CPU seconds each of its threads spent meanwhile
    (a thread started during the load counts whole; one that ended during it is left out)."""
    before = thread_cpu(pid)
    result = run_load_sync(spec)
    after = thread_cpu(pid)
    return result, {name: after[name] - before.get(name, 0.0) for name in after}


def measure(target: Target, concurrency: int, stream: bool, seconds: float) -> None:
    spec = LoadSpec(
        url=target.url(0),
        model=MODELS[0],
        concurrency=concurrency,
        stream=stream,
        keys=target.keys,
        requests_max=10_000_000,
        duration_s_max=seconds,
    )
    result, spent = load_with_cpu(target.process.pid, spec)
    served = max(result.requests, 1)
    total_ms = 1000 * sum(spent.values()) / served
    print(
        f"{target.name:16} c={concurrency:<3} {'stream' if stream else 'plain':6} {result.throughput_rps:8.1f} req/s"
        f"  p50 {result.latency_ms.get('p50', 0):7.2f} ms  p99 {result.latency_ms.get('p99', 0):7.2f} ms"
        f"  cpu {total_ms:.3f} ms/request  errors {result.errors}"
        + (f"  ttfb p50 {result.ttfb_ms.get('p50', 0):.2f} ms" if stream else "")
    )
    for name, seconds_spent in sorted(spent.items(), key=lambda item: -item[1]):
        if seconds_spent * 1000 / served >= 0.01:
            print(f"{'':22}{name:28} {1000 * seconds_spent / served:.3f} ms/request")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,16", help="comma-separated")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per cell")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--targets", default="bare,glasskey-sqlite")
    args = parser.parse_args()
    names = args.targets.split(",")
    with tempfile.TemporaryDirectory(prefix="glasskey-cost-") as tmp:
        procs = Processes(Path(tmp) / "logs")
        targets: list[Target] = []
        try:
            upstreams = start_upstreams(procs, [0])
            for name, client_library in (("bare", "glasskey"), ("bare-aiohttp", "aiohttp"), ("bare-httpx2", "httpx2")):
                if name in names:
                    targets.append(start_bare(procs, upstreams, client_library))
            if "glasskey-sqlite" in names:
                targets.append(start_glasskey(procs, seed_glasskey("glasskey-sqlite", upstreams, Path(tmp)), [0]))
            if "glasskey-postgres" in names:
                database = f"glasskey_cost_{os.getpid()}"
                data_dir = Path(tmp) / "postgres"
                data_dir.mkdir()
                seeded = seed_glasskey("glasskey-postgres", upstreams, data_dir, postgres_database=database)
                targets.append(start_glasskey(procs, seeded, [0]))
            for target in targets:
                # One short load first, so pools, caches and prepared statements are warm.
                run_load_sync(
                    LoadSpec(url=target.url(0), model=MODELS[0], concurrency=4, keys=target.keys, duration_s_max=0.5)
                )
                for concurrency in (int(c) for c in args.concurrency.split(",")):
                    measure(target, concurrency, args.stream, args.seconds)
        finally:
            procs.stop_all()
            for target in targets:
                if target.postgres_database:
                    drop_postgres_database(target.postgres_database)


if __name__ == "__main__":
    main()
