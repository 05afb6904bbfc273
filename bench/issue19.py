"""The performance targets of issue 19, each judged from one run's results.

* scaling: with N workers on PostgreSQL (``Run.workers``), requests per CPU-second of glasskey's own
  processes stay ≥ 85% of one worker's (N = 2 and 4), judged under both loads the run measures (the
  same concurrency in all, and the same per worker), and 2 workers serve ≥ 1.25× one worker's
  throughput at c=64 on this machine;
* one worker (SQLite): ≥ 15× LiteLLM's proxy (median of rounds, ≥ 12× in every round) and ≥ 1.5×
  Portkey's gateway, at c=16 and c=64, non-streaming, 0 ms upstream;
* c=1 added latency p50 ≤ 1 ms and p99 ≤ 3 ms (median of rounds; the slowest round is shown);
* PostgreSQL ≥ 75% of SQLite, one worker;
* memory and throughput flat over 1,000,000 requests (the soak), and a database of 100,000 keys and
  up to 10,000,000 receipts served within 10% of an empty one (the scale run).

As in ``bench.analysis``, a ratio is taken within each round first, then the median of those.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from bench.analysis import GLASSKEY, Cell, Verdict, by_cell, difference, median, metric, ratio, scale_ratios

SOAK_FULL_REQUESTS = 1_000_000
SCALE_FULL_KEYS = 100_000
SCALE_FULL_RECEIPTS = 10_000_000


def per_round(
    cells: dict[Cell, dict[int, dict[str, Any]]], a: Cell, b: Cell, name: str, combine: Callable[[float, float], float]
) -> list[float]:
    """``combine(a, b)`` of ``name`` within each round both ran in."""
    runs_a, runs_b = cells.get(a, {}), cells.get(b, {})
    return [combine(metric(runs_a[rep], name), metric(runs_b[rep], name)) for rep in sorted(runs_a) if rep in runs_b]


def _fmt(value: float, digits: int = 2, suffix: str = "") -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}{suffix}"


TOTAL_LOAD = "total"  # N workers at the concurrency one worker was measured at
PER_WORKER_LOAD = "per worker"  # N workers at N times it


def workers_by_round(workers: dict[str, Any] | None, load: str = TOTAL_LOAD) -> dict[int, dict[int, dict[str, Any]]]:
    """rep -> N -> that round's figures of the workers run under ``load``; one worker's phase is the
    same under both loads, so it is the baseline of both."""
    rounds: dict[int, dict[int, dict[str, Any]]] = defaultdict(dict)
    for row in (workers or {}).get("rounds", []):
        if row["workers"] == 1 or row.get("load", TOTAL_LOAD) == load:
            rounds[row["rep"]][row["workers"]] = row
    return rounds


def workers_ratios(workers: dict[str, Any] | None, n: int, field: str, load: str = TOTAL_LOAD) -> list[float]:
    """N workers' ``field`` (``requests_per_cpu_second`` or ``throughput_rps``) over one worker's, per round."""
    values = []
    for by_n in workers_by_round(workers, load).values():
        if n in by_n and 1 in by_n:
            get = (
                (lambda row: row["result"]["throughput_rps"]) if field == "throughput_rps" else (lambda row: row[field])
            )
            values.append(ratio(get(by_n[n]), get(by_n[1])))
    return values


def _scaling(results: dict[str, Any]) -> list[Verdict]:
    workers = results.get("workers")
    rounds = (workers or {}).get("rounds") or [{}]
    concurrency = rounds[0].get("concurrency", 64)
    out = []
    for n in (2, 4):
        for load, shown in ((TOTAL_LOAD, f"c={concurrency} in all"), (PER_WORKER_LOAD, f"c={concurrency} per worker")):
            values = workers_ratios(workers, n, "requests_per_cpu_second", load)
            if load == PER_WORKER_LOAD and not values:
                continue  # a run from before the second load was measured
            value = median(values)
            out.append(
                Verdict(
                    f"scaling: {n} workers on PostgreSQL, requests per CPU-second of glasskey's processes ≥ 85% of "
                    f"one worker's ({shown})",
                    _fmt(100 * value, 0, "%") + _rounds(values, percent=True),
                    None if math.isnan(value) else value >= 0.85,
                )
            )
    values = workers_ratios(workers, 2, "throughput_rps")
    value = median(values)
    out.append(
        Verdict(
            f"scaling: 2 workers' throughput ≥ 1.25× one worker's at c={concurrency} (this machine)",
            _fmt(value, 2, "×") + _rounds(values),
            None if math.isnan(value) or concurrency != 64 else value >= 1.25,
        )
    )
    return out


def _rounds(values: list[float], *, percent: bool = False) -> str:
    if len(values) < 2:
        return ""
    shown = ", ".join(f"{100 * v:.0f}%" if percent else f"{v:.2f}×" for v in values)
    return f" (rounds: {shown})"


def _peers(cells: dict[Cell, dict[int, dict[str, Any]]]) -> list[Verdict]:
    out = []
    for concurrency in (16, 64):
        a = (GLASSKEY, 0, False, concurrency)
        values = per_round(cells, a, ("litellm", 0, False, concurrency), "throughput_rps", ratio)
        value, worst = median(values), min(values, default=math.nan)
        out.append(
            Verdict(
                f"one worker ≥ 15× LiteLLM at c={concurrency} (median of rounds), ≥ 12× in every round",
                f"median {_fmt(value, 1, '×')}, slowest round {_fmt(worst, 1, '×')}",
                None if math.isnan(value) else value >= 15 and worst >= 12,
            )
        )
    for concurrency in (16, 64):
        a = (GLASSKEY, 0, False, concurrency)
        values = per_round(cells, a, ("portkey", 0, False, concurrency), "throughput_rps", ratio)
        value = median(values)
        out.append(
            Verdict(
                f"one worker ≥ 1.5× Portkey's gateway at c={concurrency}",
                _fmt(value, 2, "×") + _rounds(values),
                None if math.isnan(value) else value >= 1.5,
            )
        )
    return out


def _latency(cells: dict[Cell, dict[int, dict[str, Any]]]) -> list[Verdict]:
    out = []
    for percentile, bound in (("p50", 1.0), ("p99", 3.0)):
        values = per_round(cells, (GLASSKEY, 0, False, 1), ("direct", 0, False, 1), f"latency.{percentile}", difference)
        value, worst = median(values), max(values, default=math.nan)
        out.append(
            Verdict(
                f"added latency at c=1, {percentile} ≤ {bound:.0f} ms (median of rounds)",
                f"{_fmt(value, 2, ' ms')}, slowest round {_fmt(worst, 2, ' ms')}",
                None if math.isnan(value) else value <= bound,
            )
        )
    return out


def _postgres(cells: dict[Cell, dict[int, dict[str, Any]]]) -> list[Verdict]:
    out = []
    for concurrency in (16, 64):
        values = per_round(
            cells,
            ("glasskey-postgres", 0, False, concurrency),
            (GLASSKEY, 0, False, concurrency),
            "throughput_rps",
            ratio,
        )
        value = median(values)
        out.append(
            Verdict(
                f"PostgreSQL ≥ 75% of SQLite, one worker, c={concurrency}",
                _fmt(100 * value, 0, "%") + _rounds(values, percent=True),
                None if math.isnan(value) else value >= 0.75,
            )
        )
    return out


def soak_flatness(soak: dict[str, Any] | None) -> tuple[float, float, int]:
    """RSS of the last step over the first's, throughput of the last three steps over the first three's
    (medians: one step's noise is not a trend), and the requests served."""
    samples = (soak or {}).get("samples", [])
    if len(samples) < 2:
        return math.nan, math.nan, 0
    head, tail = samples[: min(3, len(samples) // 2)], samples[-min(3, len(samples) // 2) :]
    rss = ratio(samples[-1]["rss_kib"], samples[0]["rss_kib"])
    throughput = ratio(median(s["throughput_rps"] for s in tail), median(s["throughput_rps"] for s in head))
    return rss, throughput, samples[-1]["requests"]


def _soak(results: dict[str, Any]) -> Verdict:
    goal = "memory and throughput flat over 1,000,000 requests (last / first: RSS ≤ 1.10×, throughput ≥ 0.90×)"
    rss, throughput, served = soak_flatness(results.get("soak"))
    if math.isnan(rss):
        return Verdict(goal, "not run", None)
    text = f"RSS {rss:.3f}×, throughput {throughput:.2f}× over {served:,} requests"
    if served < SOAK_FULL_REQUESTS:
        return Verdict(goal, text + " (fewer than 1,000,000: `--soak-requests 1000000`)", None)
    return Verdict(goal, text, rss <= 1.10 and throughput >= 0.90)


def _scale(results: dict[str, Any]) -> Verdict:
    goal = "100,000 keys and up to 10,000,000 receipts generated in bulk: throughput within 10% of an empty database"
    scale = results.get("scale")
    ratios = {c: r for c, r in scale_ratios(scale).items() if c > 1}
    if not ratios:
        return Verdict(goal, "not run", None)
    fill = (scale or {}).get("fill", {})
    size_gib = fill.get("database_bytes", 0) / 2**30
    text = (
        ", ".join(f"c={c}: {100 * r:.0f}%" for c, r in ratios.items())
        + f"; {fill.get('keys', 0):,} keys, {fill.get('receipts', 0):,} receipts generated in "
        f"{fill.get('fill_seconds')} s, database {size_gib:.2f} GiB"
    )
    if fill.get("keys", 0) < SCALE_FULL_KEYS:
        return Verdict(goal, text + " (a smaller fill)", None)
    if fill.get("receipts", 0) < SCALE_FULL_RECEIPTS:
        text += " (fewer than 10,000,000 receipts: `--receipts 10000000`)"
    return Verdict(goal, text, min(ratios.values()) >= 0.9)


def verdicts_19(results: dict[str, Any]) -> list[Verdict]:
    cells = by_cell(results.get("matrix", []))
    return [
        *_scaling(results),
        *_peers(cells),
        *_latency(cells),
        *_postgres(cells),
        _soak(results),
        _scale(results),
    ]
