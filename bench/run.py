"""The benchmark run behind ``make bench``: start everything, measure, stop everything, write the report.

    python -m bench.run            # the full run (about 20 minutes on a 2-core machine)
    python -m bench.run --quick    # a smoke check of every part (about 2 minutes)

What it does, in order:

1. starts the fake upstreams (0 ms and 50 ms) and checks the load generator against them (the raw
   client and httpx, so the report can show which one is not the bottleneck);
2. starts the targets: ``bare`` (bare proxy), ``glasskey-sqlite``, ``glasskey-postgres`` (a fresh
   database it CREATEs and DROPs), ``litellm`` when ``bench/peers/install_litellm.sh`` has been
   run and ``portkey`` when ``bench/peers/install_portkey.sh`` has; ``direct`` is the upstream itself;
3. runs the matrix (upstream latency × streaming × concurrency) for several repetitions, every
   target in each cell before the next cell, in an order rotated per repetition, so that noise
   falls on all targets alike;
4. stops the glasskey targets and checks that every answered request left a succeeded receipt and
   that the ledger audit passes;
5. the workers run (issue 19): ``glasskey serve --workers N`` on PostgreSQL for N in 1, 2, 4, each
   on a database of its own, measured in alternating rounds at c=64; the CPU time of the glasskey
   processes (the supervisor and its workers, from /proc) over each measured phase gives the
   throughput per CPU-second;
6. the scale run: an empty glasskey against one filled in bulk with 100,000 keys and 1,000,000
   receipts (``--keys``, ``--receipts`` up to 10,000,000), with the fill's time and database size;
7. the soak run: 100,000 requests (``--soak-requests 1000000`` for the issue's million), RSS and
   throughput of the glasskey process sampled every step;
8. writes ``bench/results/<time>/results.json`` and ``docs/performance.md`` with its chart.

Everything it starts is stopped by process id at the end, on error and on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import math
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from bench import machine
from bench.load import LoadResult, LoadSpec, run_load_sync
from bench.procs import Processes, children_of, cpu_seconds, rss_kib
from bench.seed import drop_postgres_database, fill_scale, postgres_available, postgres_backend_pids
from bench.targets import (
    MODELS,
    ROOT,
    Target,
    litellm_installed,
    litellm_version,
    portkey_installed,
    portkey_version,
    seed_glasskey,
    start_bare,
    start_glasskey,
    start_litellm,
    start_portkey,
    start_upstreams,
)

RESULTS_DIR = ROOT / "bench" / "results"


WORKERS_DATABASE_POOL = (5, 5)  # each process's PostgreSQL pool in the workers run (size, overflow)


@dataclass(frozen=True)
class Plan:
    reps: int = 3
    duration_s: float = 2.0  # measured phase of one cell
    warmup_s: float = 0.8
    requests_max: int = 100_000  # per cell; the duration bounds it first
    concurrencies: tuple[int, ...] = (1, 16, 64)
    latencies: tuple[int, ...] = (0, 50)
    streams: tuple[bool, ...] = (False, True)
    targets: tuple[str, ...] = (
        "direct",
        "bare",
        "bare-aiohttp",
        "glasskey-sqlite",
        "glasskey-postgres",
        "litellm",
        "portkey",
    )
    calibration_s: float = 1.0
    workers: tuple[int, ...] = (1, 2, 4)  # the workers run; () skips it
    workers_concurrency: int = 64  # in all; and per worker, when workers_per_worker_load
    workers_per_worker_load: bool = True  # N > 1 also at N times the concurrency
    workers_redis_url: str = "redis://127.0.0.1:6379/14"  # used when reachable: the supported deployment
    scale: bool = True
    scale_keys: int = 100_000
    scale_receipts: int = 1_000_000
    scale_reps: int = 3
    soak: bool = True
    soak_requests: int = 100_000
    soak_step: int = 10_000
    soak_concurrency: int = 16
    soak_time_s: float = 420.0
    pause_s: float = 0.2  # between cells, so that one cell's tail does not fall in the next

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            reps=1,
            duration_s=0.6,
            warmup_s=0.3,
            concurrencies=(1, 16),
            latencies=(0, 50),
            calibration_s=0.3,
            workers=(1, 2),
            workers_concurrency=16,
            scale_keys=1_000,
            scale_receipts=20_000,
            scale_reps=1,
            soak_requests=2_000,
            soak_step=500,
            soak_time_s=30.0,
            pause_s=0.05,
        )


class Run:
    """One benchmark run: its processes, its temporary data, its results."""

    def __init__(self, plan: Plan, out_dir: Path, log: Callable[[str], None]) -> None:
        self.plan = plan
        self.out_dir = out_dir
        self.log = log
        self.procs = Processes(out_dir / "logs")
        self.tmp = Path(tempfile.mkdtemp(prefix="glasskey-bench-"))
        self.postgres_databases: list[str] = []
        self.served_ok: dict[str, int] = {}
        self.results: dict[str, Any] = {"plan": asdict(plan), "targets": {}, "matrix": [], "errors": []}

    # -- helpers ---------------------------------------------------------------------------

    def load(self, target: Target, latency: int, stream: bool, concurrency: int, **overrides: Any) -> LoadResult:
        spec = LoadSpec(
            url=target.url(latency),
            model=MODELS[latency],
            concurrency=concurrency,
            stream=stream,
            keys=target.keys,
            requests_max=self.plan.requests_max,
            duration_s_max=self.plan.duration_s,
            warmup_s_max=self.plan.warmup_s,
            extra_headers=target.headers.get(latency, ()),
        )
        result = run_load_sync(replace(spec, **overrides))
        self.served_ok[target.name] = self.served_ok.get(target.name, 0) + result.served_ok
        return result

    def note_target(self, name: str, **facts: Any) -> None:
        self.results["targets"].setdefault(name, {}).update(facts)

    def postgres_name(self, label: str) -> str:
        name = f"glasskey_bench_{os.getpid()}_{label}"
        self.postgres_databases.append(name)
        return name

    def close(self) -> None:
        self.procs.stop_all()
        for name in self.postgres_databases:
            try:
                drop_postgres_database(name)
            except Exception as exc:  # report it; leaving a database behind must not hide the results
                self.log(f"could not drop database {name}: {exc}")
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- phases ----------------------------------------------------------------------------

    def calibrate(self, direct: Target) -> None:
        """The two clients against the bare upstream: the load generator must not be what is measured."""
        rows = []
        for client in ("raw", "httpx"):
            for concurrency in self.plan.concurrencies:
                result = self.load(direct, 0, False, concurrency, client=client, duration_s_max=self.plan.calibration_s)
                rows.append({"client": client, "concurrency": concurrency, "result": result.as_dict()})
                self.log(f"calibration {client:5} c={concurrency:<3} {result.throughput_rps:8.0f} req/s")
        self.results["calibration"] = rows

    def start_targets(self, upstreams: Target) -> list[Target]:
        targets = [upstreams] if "direct" in self.plan.targets else []
        starters: dict[str, Callable[[], Target]] = {
            "bare": lambda: start_bare(self.procs, upstreams),
            "bare-aiohttp": lambda: start_bare(self.procs, upstreams, "aiohttp"),
            "bare-httpx2": lambda: start_bare(self.procs, upstreams, "httpx2"),
            "glasskey-sqlite": lambda: self.glasskey("glasskey-sqlite", upstreams),
            "glasskey-postgres": lambda: self.glasskey("glasskey-postgres", upstreams, postgres=True),
            "litellm": lambda: start_litellm(self.procs, upstreams),
            "portkey": lambda: start_portkey(self.procs, upstreams),
        }
        for name, start in starters.items():
            if name not in self.plan.targets:
                continue
            if name == "bare-httpx2" and importlib.util.find_spec("httpx2") is None:
                self.note_target(name, status="skipped: httpx2 is not installed")
                continue
            if name == "litellm" and not litellm_installed():
                self.note_target(name, status="skipped: run bench/peers/install_litellm.sh once to compare")
                continue
            if name == "portkey" and not portkey_installed():
                self.note_target(name, status="skipped: run bench/peers/install_portkey.sh once to compare")
                continue
            if name == "glasskey-postgres" and not postgres_available():
                self.note_target(name, status="skipped: no PostgreSQL at 127.0.0.1:5432")
                continue
            try:
                started = time.monotonic()
                target = start()
            except Exception as exc:  # one target that cannot start must not cost the others their run
                self.note_target(name, status=f"failed to start: {exc}")
                self.log(f"{name}: failed to start: {exc}")
                continue
            self.note_target(name, status="ok", start_s=round(time.monotonic() - started, 1))
            targets.append(target)
        if any(t.name == "litellm" for t in targets):
            self.note_target("litellm", version=litellm_version())
        if any(t.name == "portkey" for t in targets):
            self.note_target("portkey", version=portkey_version())
        return targets

    def glasskey(
        self,
        name: str,
        upstreams: Target,
        *,
        postgres: bool = False,
        label: str = "",
        workers: int = 1,
        redis_url: str = "",
        database_pool: tuple[int, int] | None = None,
    ) -> Target:
        database = self.postgres_name(label or name.split("-")[-1]) if postgres else None
        target = seed_glasskey(name, upstreams, self.tmp / name, postgres_database=database)
        # The source may change while a run goes on (others work on it): each start says what it ran.
        self.note_target(name, source_digest=machine.source_digest())
        return start_glasskey(
            self.procs,
            target,
            list(upstreams.servers),
            workers=workers,
            redis_url=redis_url,
            database_pool=database_pool,
        )

    def matrix(self, targets: list[Target]) -> None:
        plan = self.plan
        cells = [
            (lat, stream, conc) for lat in plan.latencies for stream in plan.streams for conc in plan.concurrencies
        ]
        started = time.monotonic()
        for rep in range(plan.reps):
            for index, (latency, stream, concurrency) in enumerate(cells):
                shift = (rep + index) % len(targets)
                for target in targets[shift:] + targets[:shift]:
                    if stream and not target.streams:
                        continue
                    result = self.load(target, latency, stream, concurrency)
                    self.results["matrix"].append(
                        {
                            "rep": rep,
                            "target": target.name,
                            "latency_ms": latency,
                            "stream": stream,
                            "concurrency": concurrency,
                            "result": result.as_dict(),
                        }
                    )
                    self.log(
                        f"rep {rep + 1}/{plan.reps} {latency:>2} ms {'stream' if stream else 'plain '} "
                        f"c={concurrency:<3} {target.name:18} {result.throughput_rps:8.1f} req/s "
                        f"p50 {result.latency_ms.get('p50', float('nan')):8.2f} ms "
                        f"p99 {result.latency_ms.get('p99', float('nan')):8.2f} ms errors {result.errors}"
                    )
                    time.sleep(plan.pause_s)
        self.results["matrix_seconds"] = round(time.monotonic() - started, 1)

    def record_integrity(self, target: Target) -> None:
        self.results.setdefault("integrity", {})[target.name] = self.integrity(target)

    def integrity(self, target: Target) -> dict[str, Any]:
        """Stop a glasskey target, then compare its succeeded receipts with the 200s it answered, and audit."""
        from sqlalchemy import func, select

        from glasskey.ledger import audit
        from glasskey.store.database import Database
        from glasskey.store.tables import receipts

        assert target.seed is not None
        self.procs.stop(target.process)
        database = Database(target.seed.database_url)
        try:
            with database.read() as conn:
                succeeded = conn.execute(
                    select(func.count()).select_from(receipts).where(receipts.c.status == "succeeded")
                ).scalar_one()
                report = audit(conn)
        finally:
            database.dispose()
        facts = {
            "answered_ok": self.served_ok.get(target.name, 0),
            "receipts_succeeded": succeeded,
            "audit_ok": report.ok,
            "audit_problems": report.problems[:10],
            "receipt_charges_micros": report.receipt_charges_micros,
            "posted_charges_micros": report.posted_charges_micros,
        }
        self.log(f"integrity {target.name}: {facts['answered_ok']} answered, {succeeded} receipts, audit {report.ok}")
        return facts

    def workers(self, upstreams: Target) -> None:
        """``glasskey serve --workers N`` on PostgreSQL, N alternating within each round, under two loads:
        the same concurrency in all (``workers_concurrency``: N workers share one worker's load), and,
        for N > 1, N times it (each worker as busy as the one was).

        Each measured phase is bracketed by the CPU time of the target's processes (the supervisor
        and its workers), so a round gives throughput and requests per CPU-second of glasskey's own
        processes: what contention (locks, the writer, the database) costs shows there, while the
        machine's two cores, shared with PostgreSQL, the upstream and the load, cap the throughput.
        """
        plan = self.plan
        redis_url = plan.workers_redis_url if _redis_reachable(plan.workers_redis_url) else ""
        # Every N's processes run at once (1 + 2 + 4 = 7): at the settings' 10 + 20 connections each they
        # could ask for 210 of PostgreSQL's default 100 (a run met "too many clients"). A worker serving
        # c=64/N uses a few (its writer, its liveness lock, reads past the cache): 5 + 5 each, 70 in all.
        targets = {
            n: self.glasskey(
                f"glasskey-postgres-{n}w",
                upstreams,
                postgres=True,
                label=f"w{n}",
                workers=n,
                redis_url=redis_url,
                database_pool=WORKERS_DATABASE_POOL,
            )
            for n in plan.workers
        }
        time.sleep(2.0)  # every worker of every target has started (the port opens with the first)
        rounds = []
        for rep in range(plan.reps):
            order = list(plan.workers)
            shift = rep % len(order)
            for n in order[shift:] + order[:shift]:
                rounds.append(self.workers_phase(targets[n], rep, n, plan.workers_concurrency, "total"))
                if n > 1 and plan.workers_per_worker_load:
                    # The same load per worker as one worker's: what N processes cost when each has
                    # as much to do as the one had (a fixed total splits each worker's batches N ways).
                    rounds.append(self.workers_phase(targets[n], rep, n, plan.workers_concurrency * n, "per worker"))
        self.results["workers"] = {"redis": bool(redis_url), "rounds": rounds}
        for target in targets.values():
            self.record_integrity(target)

    def workers_phase(self, target: Target, rep: int, n: int, concurrency: int, load: str) -> dict[str, Any]:
        """One measured phase of the workers run: throughput, and the CPU of glasskey's processes and of
        PostgreSQL's backends over the phase alone."""
        # The warm-up is a load of its own, so the CPU bracket holds the measured phase only.
        self.load(target, 0, False, concurrency, duration_s_max=self.plan.warmup_s, warmup_requests=0)
        assert target.postgres_database is not None
        backends = postgres_backend_pids(target.postgres_database)
        database_before = sum(cpu_seconds(pid, descendants=False) for pid in backends)
        cpu_before = cpu_seconds(target.process.pid)
        result = self.load(target, 0, False, concurrency, warmup_requests=0)
        cpu_s = cpu_seconds(target.process.pid) - cpu_before
        # A backend opened during the phase counts whole; one closed during it is lost (rare).
        backends_after = postgres_backend_pids(target.postgres_database)
        database_s = sum(cpu_seconds(pid, descendants=False) for pid in backends_after) - database_before
        per_cpu = result.requests / cpu_s if cpu_s > 0 else math.nan
        self.log(
            f"workers rep {rep + 1} N={n} c={concurrency} ({load}) {result.throughput_rps:8.1f} req/s "
            f"cpu {cpu_s:6.2f} s  {per_cpu:8.1f} req/cpu-s  PostgreSQL cpu {database_s:5.2f} s errors {result.errors}"
        )
        time.sleep(self.plan.pause_s)
        return {
            "rep": rep,
            "workers": n,
            "concurrency": concurrency,
            "load": load,
            "cpu_seconds": round(cpu_s, 3),
            "database_cpu_seconds": round(database_s, 3),
            "requests_per_cpu_second": per_cpu,
            "processes": 1 + len(children_of(target.process.pid)),
            "result": result.as_dict(),
        }

    def scale(self, upstreams: Target) -> None:
        """An empty glasskey against one with many keys and receipts, same load, interleaved."""
        plan = self.plan
        latencies = list(upstreams.servers)
        empty = self.glasskey("glasskey-sqlite-empty", upstreams)
        big = self.glasskey("glasskey-sqlite-scale", upstreams)
        # The fill clones rows the gateway itself wrote, so it serves a few requests first.
        self.load(big, 0, False, 1, requests_max=10, warmup_requests=0)
        self.procs.stop(big.process)
        self.log(f"filling {plan.scale_keys:,} keys and {plan.scale_receipts:,} receipts")
        assert big.seed is not None
        fill = fill_scale(big.seed.database_url, plan.scale_keys, plan.scale_receipts)
        self.log(f"filled in {fill['fill_seconds']} s: {fill}")
        big = start_glasskey(self.procs, big, latencies)
        runs = []
        concurrencies = sorted({1, *plan.concurrencies})
        for rep in range(plan.scale_reps):
            for index, concurrency in enumerate(concurrencies):
                pair = [("empty", empty), ("scale", big)]
                if (rep + index) % 2:
                    pair.reverse()
                for label, target in pair:
                    result = self.load(target, 0, False, concurrency)
                    runs.append({"rep": rep, "target": label, "concurrency": concurrency, "result": result.as_dict()})
                    self.log(
                        f"scale rep {rep + 1} c={concurrency:<3} {label:5} {result.throughput_rps:8.1f} req/s "
                        f"p99 {result.latency_ms.get('p99', float('nan')):.2f} ms errors {result.errors}"
                    )
                    time.sleep(plan.pause_s)
        self.procs.stop(empty.process)
        self.procs.stop(big.process)
        self.results["scale"] = {"fill": fill, "runs": runs}

    def soak(self, upstreams: Target) -> None:
        """Requests in steps on a fresh glasskey, resident memory sampled after each step."""
        plan = self.plan
        target = self.glasskey("glasskey-sqlite-soak", upstreams)
        pid = target.process.pid
        samples: list[dict[str, Any]] = []
        rss_start = rss_kib(pid)
        served = 0
        started = time.monotonic()
        deadline = started + plan.soak_time_s
        while served < plan.soak_requests and time.monotonic() < deadline:
            step = min(plan.soak_step, plan.soak_requests - served)
            result = self.load(
                target,
                0,
                False,
                plan.soak_concurrency,
                requests_max=step,
                warmup_requests=0,
                duration_s_max=max(deadline - time.monotonic(), 0.1),
            )
            served += result.requests
            samples.append(
                {
                    "requests": served,
                    "rss_kib": rss_kib(pid),
                    "throughput_rps": result.throughput_rps,
                    "errors": result.errors,
                    "p99_ms": result.latency_ms.get("p99"),
                    "seconds": round(time.monotonic() - started, 1),
                }
            )
            self.log(f"soak {served:>7,} requests  RSS {samples[-1]['rss_kib']} KiB  {result.throughput_rps:.0f} req/s")
        self.record_integrity(target)
        self.results["soak"] = {
            "rss_start_kib": rss_start,
            "samples": samples,
            "time_bound_s": plan.soak_time_s,
            "concurrency": plan.soak_concurrency,
            "seconds": round(time.monotonic() - started, 1),
        }

    # -- the whole run ---------------------------------------------------------------------

    def execute(self) -> None:
        plan = self.plan
        self.results["meta"] = machine.describe()
        upstreams = start_upstreams(self.procs, list(plan.latencies))
        self.calibrate(upstreams)
        targets = self.start_targets(upstreams)
        self.log("targets: " + ", ".join(t.name for t in targets))
        self.matrix(targets)
        for target in targets:
            if target.kind == "glasskey":
                self.guarded(f"integrity of {target.name}", partial(self.record_integrity, target))
        for target in targets:
            if target.kind in ("bare", "litellm", "portkey"):
                self.procs.stop(target.process)
        if plan.workers and postgres_available():
            self.guarded("workers", lambda: self.workers(upstreams))
        if plan.scale:
            self.guarded("scale", lambda: self.scale(upstreams))
        if plan.soak:
            self.guarded("soak", lambda: self.soak(upstreams))
        self.results["meta"]["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        self.results["meta"]["loadavg_after"] = machine.loadavg()

    def guarded(self, name: str, phase: Callable[[], None]) -> None:
        """Run a phase; a failure is recorded in the results instead of losing the whole run."""
        try:
            phase()
        except Exception as exc:  # the report says which phase failed and why
            self.results["errors"].append({"phase": name, "error": repr(exc), "trace": traceback.format_exc()})
            self.log(f"{name} failed: {exc!r}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short smoke run of every part")
    parser.add_argument("--reps", type=int, help="repetitions of the matrix")
    parser.add_argument("--duration", type=float, help="measured seconds per cell")
    parser.add_argument("--targets", help="comma-separated subset of: " + ", ".join(Plan().targets))
    parser.add_argument("--concurrency", help="comma-separated, e.g. 1,16,64")
    parser.add_argument("--workers", help="the workers run's worker counts, e.g. 1,2,4; 0 skips it")
    parser.add_argument("--workers-concurrency", type=int, help="the workers run's concurrency (64 by default)")
    parser.add_argument("--keys", type=int, help="keys of the scale run's filled database (100,000 by default)")
    parser.add_argument("--receipts", type=int, help="receipts of the scale run's filled database (up to 10,000,000)")
    parser.add_argument("--no-scale", action="store_true")
    parser.add_argument("--no-soak", action="store_true")
    parser.add_argument("--soak-time", type=float, help="upper bound of the soak run in seconds")
    parser.add_argument("--soak-requests", type=int, help="requests of the soak run (100,000 by default)")
    parser.add_argument("--soak-step", type=int, help="requests between two samples of the soak's memory")
    parser.add_argument("--no-report", action="store_true", help="keep docs/performance.md as it is")
    return parser.parse_args(argv)


def plan_from(args: argparse.Namespace) -> Plan:
    plan = Plan.quick() if args.quick else Plan()
    changes: dict[str, Any] = {}
    if args.reps:
        changes.update(reps=args.reps, scale_reps=args.reps)
    if args.duration:
        changes["duration_s"] = args.duration
    if args.targets:
        changes["targets"] = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    if args.concurrency:
        changes["concurrencies"] = tuple(int(c) for c in args.concurrency.split(","))
    if args.workers:
        changes["workers"] = tuple(n for n in (int(w) for w in args.workers.split(",")) if n > 0)
    if args.workers_concurrency:
        changes["workers_concurrency"] = args.workers_concurrency
    if args.keys:
        changes["scale_keys"] = args.keys
    if args.receipts:
        changes["scale_receipts"] = args.receipts
    if args.no_scale:
        changes["scale"] = False
    if args.no_soak:
        changes["soak"] = False
    if args.soak_time:
        changes["soak_time_s"] = args.soak_time
    if args.soak_requests:
        changes["soak_requests"] = args.soak_requests
        if not args.soak_time:  # a million requests need more than the default bound: at least 400 req/s
            changes["soak_time_s"] = max(plan.soak_time_s, args.soak_requests / 400)
        if not args.soak_step:  # twenty samples, whatever the length
            changes["soak_step"] = max(plan.soak_step, args.soak_requests // 20)
    if args.soak_step:
        changes["soak_step"] = args.soak_step
    return replace(plan, **changes)


def _redis_reachable(url: str) -> bool:
    try:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # any failure means: run the workers without Redis, and say so
        return False


def _on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through every finally: the processes are stopped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = plan_from(args)
    signal.signal(signal.SIGTERM, _on_sigterm)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + ("-quick" if args.quick else "")
    out_dir = RESULTS_DIR / stamp
    out_dir.mkdir(parents=True, exist_ok=True)
    log_file = (out_dir / "run.log").open("a")

    def log(line: str) -> None:
        text = f"{datetime.now().strftime('%H:%M:%S')} {line}"
        print(text, flush=True)
        log_file.write(text + "\n")
        log_file.flush()

    run = Run(plan, out_dir, log)
    started = time.monotonic()
    try:
        run.execute()
    finally:
        run.close()
        run.results["wall_seconds"] = round(time.monotonic() - started, 1)
        (out_dir / "results.json").write_bytes(orjson.dumps(run.results, option=orjson.OPT_INDENT_2))
        log(f"results: {out_dir / 'results.json'} ({run.results['wall_seconds']} s)")
        log_file.close()
    if not args.no_report:
        from bench import report

        written = report.write(run.results, quick=args.quick, out_dir=out_dir)
        print(f"report: {', '.join(str(p) for p in written)}")
    with contextlib.suppress(OSError):
        latest = RESULTS_DIR / "latest"
        if latest.is_symlink() or latest.exists():
            latest.unlink()
        latest.symlink_to(out_dir.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
