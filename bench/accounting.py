"""What glasskey's accounting costs per request, without HTTP: the lifecycle driven in-process.

    python -m bench.accounting                   # c=1 and c=16, SQLite, 6,000 requests each
    python -m bench.accounting --concurrency 64 --requests 20000
    python -m bench.accounting --postgres        # a fresh PostgreSQL database instead

Each simulated request runs the lifecycle's real steps on a seeded SQLite database (parse the
body, verify the key, policy, route and quote, hold through the group-commit writer, a 0.3 ms
pause standing in for the upstream, then settlement with its receipt and commit). No server, no
client and no upstream share the process, so the CPU time per request (both the event loop and the
writer thread, from ``time.process_time``) is the accounting's own, and it moves much less with the
machine's load than a figure taken through HTTP. ``bench/findings.md`` compares it with the
bare proxy's CPU per request.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path

import orjson

from bench.seed import create_postgres_database, drop_postgres_database, seed_gateway
from glasskey.gateway.lifecycle import Lifecycle
from glasskey.providers.base import Usage
from glasskey.services import build_services

BODY = orjson.dumps(
    {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Say hello in one short sentence, please."}],
        "max_tokens": 64,
    }
)
UPSTREAM_PAUSE_S = 0.0003


async def _read_body() -> bytes:
    return BODY


async def measure(database_url: str, data_dir: Path, concurrency: int, requests: int) -> tuple[float, float]:
    """(requests per second, CPU microseconds per request) of ``requests`` run by ``concurrency`` clients.

    The CPU is this process's only: on PostgreSQL, the server's own work is not in it.
    """
    seed = seed_gateway(database_url, data_dir, {"gpt-4o-mini": "http://127.0.0.1:9/v1"}, 16)
    services = build_services(seed.settings())
    lifecycle = Lifecycle(services)
    sent = 0

    async def client(index: int, count: int) -> None:
        nonlocal sent
        authorization = f"Bearer {seed.keys[index % len(seed.keys)]}"
        for _ in range(count):
            sent += 1
            run = lifecycle.new_run(f"req_bench_{sent:016d}", "chat.completions")
            _, _, routes = await lifecycle.prepare(run, authorization, _read_body)
            await asyncio.sleep(UPSTREAM_PAUSE_S)
            await lifecycle.settle(run, routes[0], Usage(12, 25), status="succeeded", http_status=200)

    try:
        await asyncio.gather(*(client(i, 20) for i in range(concurrency)))  # caches, connections, pages
        per_client = max(1, requests // concurrency)
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(client(i, per_client) for i in range(concurrency)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        services.writer.close()
        services.db.dispose()
    done = per_client * concurrency
    return done / wall, cpu / done * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,16", help="comma-separated")
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--postgres", action="store_true", help="a fresh PostgreSQL database (127.0.0.1:5432)")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    for concurrency in (int(c) for c in args.concurrency.split(",")):
        data_dir = Path(tempfile.mkdtemp(prefix="glasskey-accounting-"))
        database = f"glasskey_accounting_{os.getpid()}_{concurrency}"
        url = create_postgres_database(database) if args.postgres else f"sqlite:///{data_dir / 'glasskey.db'}"
        try:
            rate, cpu_us = runner(measure(url, data_dir, concurrency, args.requests))
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
            if args.postgres:
                drop_postgres_database(database)
        print(f"c={concurrency:<3d} {rate:8.0f} req/s  CPU {cpu_us:6.0f} us/request (event loop and writer)")


if __name__ == "__main__":
    main()
