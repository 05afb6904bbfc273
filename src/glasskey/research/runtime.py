"""How long a research job will run: p50 and p90, and the words saying how they were estimated.

Per step with model calls: the call rounds (calls / parallelism, rounded up) times one call's
latency on the route that would serve it, taken from the best evidence there is:

1. **per output token**, from the route's recent successful receipts in the database (they
   outlive a restart): the median and 90th percentile of ``latency_ms / output_tokens``, times
   the call's typical output (p50: ``min(max_tokens, 256)``) and its maximum output (p90:
   ``max_tokens``); used from ``MIN_SAMPLES`` receipts on;
2. **per call**, from the latencies this process measured on the route (``HealthBoard``: p50,
   and its p95 standing in for p90, which errs long);
3. a **stated default** per call, an assumption and said to be one.

A key whose requests-per-minute limit is below the plan's calls makes the runner pace itself;
the estimate then counts at least the whole minutes that adds.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select

from glasskey.pricing.tokens import ESTIMATED_OUTPUT_TOKENS
from glasskey.research.plan import MAP_PARALLELISM, Plan
from glasskey.store.tables import receipts

DEFAULT_CALL_LATENCY_MS = {"map": (2_000, 6_000), "analysis": (10_000, 30_000)}
MIN_SAMPLES = 5
SAMPLES_MAX = 200  # the newest successful receipts of a route that are read
RECEIPTS_WINDOW = 20_000  # only the newest receipts of the gateway are searched, so the read stays bounded


@dataclass(frozen=True)
class RouteSpeed:
    samples: int
    ms_per_token_p50: float
    ms_per_token_p90: float


def route_speed(conn: Connection, route_id: str) -> RouteSpeed | None:
    newest = conn.execute(select(func.max(receipts.c.seq))).scalar() or 0
    rows = conn.execute(
        select(receipts.c.latency_ms, receipts.c.output_tokens)
        .where(
            receipts.c.seq > newest - RECEIPTS_WINDOW,
            receipts.c.route_id == route_id,
            receipts.c.status == "succeeded",
            receipts.c.output_tokens > 0,
        )
        .order_by(receipts.c.seq.desc())
        .limit(SAMPLES_MAX)
    ).all()
    if len(rows) < MIN_SAMPLES:
        return None
    rates = sorted(r.latency_ms / r.output_tokens for r in rows)
    return RouteSpeed(len(rows), statistics.median(rates), rates[min(len(rates) - 1, int(0.9 * len(rates)))])


def runtime_estimate(
    conn: Connection, plan: Plan, models: list[dict[str, Any]], rpm_limit: int | None = None
) -> dict[str, Any]:
    by_model = {m["model"]: m for m in models}
    p50 = p90 = 0
    how: list[str] = []
    for step in plan.steps():
        if not step["calls"]:
            continue
        rounds = -(-step["calls"] // step["parallelism"])
        model = by_model[step["model"]]
        max_tokens = next(c.body["max_tokens"] for c in plan.calls if c.step == step["name"])
        route: dict[str, Any] = model.get("route") or {}
        speed = route_speed(conn, route["id"]) if route else None
        latency = (model.get("health") or {}).get("latency_ms") or {}
        start = f"{step['name']}: {step['calls']} call(s) in {rounds} round(s) of {step['parallelism']}"
        if speed is not None:
            typical = min(max_tokens, ESTIMATED_OUTPUT_TOKENS)
            call_p50, call_p90 = round(speed.ms_per_token_p50 * typical), round(speed.ms_per_token_p90 * max_tokens)
            how.append(
                f"{start} x route {route['id']}'s speed over its last {speed.samples} successful receipts "
                f"({speed.ms_per_token_p50:.2f} ms per output token at the median, {speed.ms_per_token_p90:.2f} "
                f"at p90), for {typical} output tokens (p50) and at most {max_tokens} (p90)"
            )
        elif latency.get("p50") is not None:
            call_p50, call_p90 = int(latency["p50"]), int(latency["p95"])
            how.append(
                f"{start} x the measured latency of route {route['id']} over {model['health']['requests']} recent "
                f"request(s) in this process (p50 {call_p50} ms; p95 {call_p90} ms stands in for p90)"
            )
        else:
            call_p50, call_p90 = DEFAULT_CALL_LATENCY_MS[step["name"]]
            where = f"route {route['id']}" if route else f"model {model['model']}"
            how.append(
                f"{start}; no latency measured yet for {where}, so glasskey's default of {call_p50} ms p50 / "
                f"{call_p90} ms p90 per call (an assumption, not a measurement)"
            )
        p50 += rounds * call_p50
        p90 += rounds * call_p90
    calls = len(plan.calls)
    if rpm_limit and calls > rpm_limit:
        # The runner paces itself to the key's limit: past it, whole minutes pass between batches.
        paced_ms = (calls - 1) // rpm_limit * 60_000
        p50, p90 = max(p50, paced_ms), max(p90, paced_ms)
        how.append(
            f"the key's rate limit of {rpm_limit} requests a minute paces the {calls} calls: at least "
            f"{paced_ms // 1000} s"
        )
    how.append(
        "local steps (parsing, figures, report) take milliseconds; retries of malformed answers are not included"
    )
    return {"p50_ms": p50, "p90_ms": p90, "how": how, "parallelism": MAP_PARALLELISM}
