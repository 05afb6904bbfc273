"""Research assistant benchmark: preflight latency of a 10-document job, and the runner's overhead per call.

``python -m bench.research`` seeds a throw-away SQLite gateway (simulated routes, no latency),
then measures in-process, without HTTP:

* the preflight of a job with 10 documents (2 chunks each), a price file and depth ``standard``
  (41 planned calls, each quoted): parse, figures, plan and quotes, median and p95 of N runs;
* the orchestration overhead per call: a whole job run by ``JobRunner`` against the same number
  of bare ``Lifecycle.chat`` calls with the same bodies; the difference divided by the calls is
  what the runner adds (cap reservations, its rows, parsing answers, the report).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import orjson

from glasskey.gateway.lifecycle import Lifecycle
from glasskey.keys.policy import KeyPolicy
from glasskey.keys.service import create_key
from glasskey.orgs.service import create_org, top_up
from glasskey.pricing.catalog import get_model
from glasskey.research import jobs
from glasskey.research.preflight import preflight
from glasskey.research.runner import JobRunner
from glasskey.research.spec import JobSpec, Prepared, prepare
from glasskey.routing.routes import Route, create_route
from glasskey.services import Services, build_services
from glasskey.settings import load_settings

ENCRYPTION_KEY = "YmVuY2gtZW5jcnlwdGlvbi1rZXktMDEyMzQ1Njc4OWE="
DOCUMENT = "\n\n".join(
    f"Paragraph {i}: the company's revenue grew {i} percent as its new product line sold well in every region. " * 6
    for i in range(8)
)
PRICES = "date,symbol,close\n" + "".join(
    f"{2000 + m // 12}-{m % 12 + 1:02d}-01,{s},{100 + m * k}\n" for s, k in (("AAA", 1), ("BBB", 2)) for m in range(120)
)


def setup(data_dir: Path) -> tuple[Services, str]:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "admin_token": "bench-admin-token-0123456789abcdef",
        "key_pepper": "bench-pepper-0123456789abcdef",
        "cache_ttl_ms": 1000,
    }
    from glasskey.settings import Settings

    if "encryption_key" in Settings.model_fields:
        values["encryption_key"] = ENCRYPTION_KEY
    services = build_services(load_settings(environ={}, **values))
    now = services.clock()
    with services.db.write() as conn:
        org = create_org(conn, "research-bench", now)
        top_up(conn, org.id, "routed", 10**12, now)
        for model in ("gpt-4o-mini", "claude-sonnet-4-5"):
            prices = get_model(conn, model).official_prices
            route = Route(
                id=f"rt-{model}", model=model, provider="simulated", base_url="", upstream_model=model,
                settlement="routed", prices=prices, costs=prices,
            )  # fmt: skip
            create_route(conn, route, now)
        _, key = create_key(
            conn, pepper=services.pepper, org_id=org.id, name="bench", policy=KeyPolicy(settlement="routed"), now=now
        )
    return services, key


def files(services: Services, key_id: str) -> list[jobs.StoredFile]:
    now = services.clock()
    with services.db.write() as conn:
        stored = [jobs.store_file(conn, key_id, "prices.csv", PRICES.encode(), now)]
        stored += [jobs.store_file(conn, key_id, f"doc{i}.md", f"# {i}\n\n{DOCUMENT}".encode(), now) for i in range(10)]
    return stored


async def measure(services: Services, key: str, runs: int) -> dict[str, float]:
    lifecycle = Lifecycle(services)
    record = await lifecycle.key_of(f"Bearer {key}")
    stored = files(services, record.id)
    spec = JobSpec.parse({"question": "What drove returns?", "inputs": [f.id for f in stored], "depth": "standard"})
    timings = []

    def check(conn: Any, prepared: Prepared) -> dict[str, Any]:
        return preflight(conn, record, prepared, services.health, services.clock())

    for _ in range(runs):
        began = time.perf_counter()
        prepared = prepare(spec, stored)
        result = await lifecycle.read(partial(check, prepared=prepared))
        timings.append((time.perf_counter() - began) * 1000)
    calls = len(prepared.plan.calls)

    async def direct() -> float:
        began = time.perf_counter()
        for index, call in enumerate(prepared.plan.calls):
            raw = orjson.dumps(call.body)

            async def body(raw: bytes = raw) -> bytes:
                return raw

            await lifecycle.chat(f"req_bench_{time.time_ns()}_{index}", f"Bearer {key}", body)
        return time.perf_counter() - began

    async def job() -> float:
        with services.db.write() as conn:
            job_id = jobs.create_job(
                conn, key_id=record.id, org_id=record.org_id, plan=prepared.plan, files=stored,
                risk_free_rate="0", window=(None, None), confirmed_max_micros=result["cost"]["max_micros"],
                planned_max_micros=result["cost"]["max_micros"], planned_estimate_micros=0, expected_ms=(0, 0),
                call_max_micros=[c["max_charge_micros"] for c in result["plan"]["calls"]], now=services.clock(),
                instance_id=services.instance_id,
            )  # fmt: skip
        began = time.perf_counter()
        await JobRunner(services, lifecycle).run(job_id)
        return time.perf_counter() - began

    await direct()  # warm up
    direct_s = statistics.median([await direct() for _ in range(3)])
    job_s = statistics.median([await job() for _ in range(3)])
    timings.sort()
    return {
        "planned_calls": calls,
        "preflight_ms_p50": statistics.median(timings),
        "preflight_ms_p95": timings[int(0.95 * (len(timings) - 1))],
        "direct_calls_ms": direct_s * 1000,
        "job_ms": job_s * 1000,
        "overhead_ms_per_call": (job_s - direct_s) * 1000 / calls,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="preflights to time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        services, key = setup(Path(folder))
        try:
            numbers = anyio.run(measure, services, key, args.runs)
        finally:
            services.close()
    for name, value in numbers.items():
        print(f"{name}: {value:.2f}" if isinstance(value, float) else f"{name}: {value}")


if __name__ == "__main__":
    main()
