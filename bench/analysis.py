"""From raw runs to medians, pairwise ratios and the issue's targets, met or not.

The machine is noisy (two cores shared by the client, the proxy, the upstream and whatever else
runs), so a ratio is computed inside each repetition, between runs made seconds apart, and only
then is the median of those ratios taken. A median of throughputs divided by another median would
mix repetitions that met different noise.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

Cell = tuple[str, int, bool, int]  # target, latency_ms, stream, concurrency
Scenario = tuple[int, bool, int]  # latency_ms, stream, concurrency
GLASSKEY = "glasskey-sqlite"
# The order targets are shown in.
ORDER = ["direct", "bare", "bare-aiohttp", "bare-httpx2", "glasskey-sqlite", "glasskey-postgres", "litellm", "portkey"]


def median(values: Iterable[float]) -> float:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


def by_cell(matrix: list[dict[str, Any]]) -> dict[Cell, dict[int, dict[str, Any]]]:
    """(target, latency, stream, concurrency) -> {rep: load result}."""
    cells: dict[Cell, dict[int, dict[str, Any]]] = defaultdict(dict)
    for run in matrix:
        cells[(run["target"], run["latency_ms"], run["stream"], run["concurrency"])][run["rep"]] = run["result"]
    return cells


def metric(result: dict[str, Any], name: str) -> float:
    """``throughput_rps``, ``errors``, or ``latency.p50`` / ``ttfb.p99`` style names."""
    if "." in name:
        group, key = name.split(".")
        return float(result.get(f"{group}_ms", {}).get(key, math.nan))
    return float(result.get(name, math.nan))


def cell_median(cells: dict[Cell, dict[int, dict[str, Any]]], cell: Cell, name: str) -> float:
    return median(metric(result, name) for result in cells.get(cell, {}).values())


def paired(
    cells: dict[Cell, dict[int, dict[str, Any]]],
    a: Cell,
    b: Cell,
    name: str,
    combine: Callable[[float, float], float],
) -> float:
    """The median over repetitions of ``combine(a's metric, b's metric)`` within each repetition."""
    runs_a, runs_b = cells.get(a, {}), cells.get(b, {})
    values = [combine(metric(runs_a[rep], name), metric(runs_b[rep], name)) for rep in runs_a if rep in runs_b]
    return median(values)


def ratio(x: float, y: float) -> float:
    return x / y if y else math.nan


def difference(x: float, y: float) -> float:
    return x - y


def scenarios(cells: dict[Cell, dict[int, dict[str, Any]]]) -> list[Scenario]:
    return sorted({(latency, stream, concurrency) for _, latency, stream, concurrency in cells})


def targets_of(cells: dict[Cell, dict[int, dict[str, Any]]], order: list[str]) -> list[str]:
    present = {cell[0] for cell in cells}
    return [t for t in order if t in present] + sorted(present - set(order))


@dataclass
class Verdict:
    goal: str
    measured: str
    met: bool | None  # None: not measured in this run

    @property
    def mark(self) -> str:
        return {True: "met", False: "**not met**", None: "not measured"}[self.met]


def _fmt(value: float, digits: int = 2, suffix: str = "") -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}{suffix}"


def verdicts(results: dict[str, Any]) -> list[Verdict]:
    """The issue's targets, each with the figure this run measured."""
    cells = by_cell(results.get("matrix", []))
    out: list[Verdict] = []

    def at(target: str, stream: bool, concurrency: int) -> Cell:
        return (target, 0, stream, concurrency)

    for concurrency in (16, 64):
        x = paired(cells, at(GLASSKEY, False, concurrency), at("litellm", False, concurrency), "throughput_rps", ratio)
        out.append(
            Verdict(
                f"throughput c={concurrency}, non-streaming, SQLite ≥ 10× LiteLLM",
                _fmt(x, 2, "×"),
                None if math.isnan(x) else x >= 10,
            )
        )
        x = paired(cells, at(GLASSKEY, False, concurrency), at("bare", False, concurrency), "throughput_rps", ratio)
        out.append(
            Verdict(
                f"throughput c={concurrency}, non-streaming, SQLite ≥ 50% of the bare proxy",
                _fmt(100 * x, 0, "%"),
                None if math.isnan(x) else x >= 0.5,
            )
        )
    p50 = paired(cells, at(GLASSKEY, False, 1), at("direct", False, 1), "latency.p50", difference)
    p99 = paired(cells, at(GLASSKEY, False, 1), at("direct", False, 1), "latency.p99", difference)
    out.append(
        Verdict(
            "added latency at c=1 (glasskey − direct), p50 ≤ 1 ms",
            _fmt(p50, 2, " ms"),
            None if math.isnan(p50) else p50 <= 1,
        )
    )
    out.append(
        Verdict(
            "added latency at c=1 (glasskey − direct), p99 ≤ 3 ms",
            _fmt(p99, 2, " ms"),
            None if math.isnan(p99) else p99 <= 3,
        )
    )
    x = paired(cells, at(GLASSKEY, True, 1), at("litellm", True, 1), "throughput_rps", ratio)
    out.append(Verdict("streams per second at c=1 ≥ 10× LiteLLM", _fmt(x, 2, "×"), None if math.isnan(x) else x >= 10))
    ttfb = paired(cells, at(GLASSKEY, True, 1), at("direct", True, 1), "ttfb.p50", difference)
    out.append(
        Verdict(
            "time to first byte added at c=1, p50 ≤ 1 ms", _fmt(ttfb, 2, " ms"), None if math.isnan(ttfb) else ttfb <= 1
        )
    )
    runs = cells.get(at(GLASSKEY, False, 64), {})
    spread = median(ratio(metric(r, "latency.p99"), metric(r, "latency.p50")) for r in runs.values())
    out.append(
        Verdict(
            "c=64 non-streaming: p99 ≤ 3× p50 (no periodic stalls)",
            _fmt(spread, 2, "×"),
            None if math.isnan(spread) else spread <= 3,
        )
    )
    out.append(_scale_verdict(results.get("scale")))
    out.append(_soak_verdict(results.get("soak")))
    for concurrency in (16, 64):
        x = paired(
            cells,
            at("glasskey-postgres", False, concurrency),
            at(GLASSKEY, False, concurrency),
            "throughput_rps",
            ratio,
        )
        out.append(
            Verdict(
                f"PostgreSQL throughput c={concurrency} ≥ half of SQLite's",
                _fmt(100 * x, 0, "%"),
                None if math.isnan(x) else x >= 0.5,
            )
        )
    return out


def scale_ratio_lists(scale: dict[str, Any] | None) -> dict[int, list[float]]:
    """Per concurrency: throughput(filled) / throughput(empty) of each repetition."""
    if not scale:
        return {}
    per: dict[tuple[int, int], dict[str, float]] = defaultdict(dict)
    for run in scale.get("runs", []):
        per[(run["concurrency"], run["rep"])][run["target"]] = run["result"]["throughput_rps"]
    ratios: dict[int, list[float]] = defaultdict(list)
    for (concurrency, _), pair in sorted(per.items()):
        if "scale" in pair and "empty" in pair:
            ratios[concurrency].append(ratio(pair["scale"], pair["empty"]))
    return dict(sorted(ratios.items()))


def scale_ratios(scale: dict[str, Any] | None) -> dict[int, float]:
    """Per concurrency: the median over repetitions of throughput(filled) / throughput(empty)."""
    return {c: median(v) for c, v in scale_ratio_lists(scale).items()}


def _scale_verdict(scale: dict[str, Any] | None) -> Verdict:
    goal = "10,000 keys and 1,000,000 receipts: throughput within 10% of an empty database"
    ratios = {c: r for c, r in scale_ratios(scale).items() if c > 1}
    if not ratios:
        return Verdict(goal, "not run", None)
    fill = (scale or {}).get("fill", {})
    worst = min(ratios.values())
    text = ", ".join(f"c={c}: {100 * r:.0f}%" for c, r in ratios.items())
    if fill.get("keys", 0) < 10_000 or fill.get("receipts", 0) < 1_000_000:
        return Verdict(goal, f"{text} (smaller fill: {fill.get('keys')} keys, {fill.get('receipts')} receipts)", None)
    return Verdict(goal, text + " of empty", worst >= 0.9)


def soak_ratio(soak: dict[str, Any] | None) -> tuple[float, int, int]:
    """RSS at the last sample / RSS at the first sample, and the request counts of both."""
    samples = (soak or {}).get("samples", [])
    if len(samples) < 2:
        return math.nan, 0, 0
    first, last = samples[0], samples[-1]
    return ratio(last["rss_kib"], first["rss_kib"]), first["requests"], last["requests"]


def _soak_verdict(soak: dict[str, Any] | None) -> Verdict:
    goal = "soak: resident memory after 100,000 requests within 10% of after 10,000"
    value, first, last = soak_ratio(soak)
    if math.isnan(value):
        return Verdict(goal, "not run", None)
    text = f"{value:.3f}× (RSS at {last:,} requests / at {first:,})"
    if first != 10_000 or last < 100_000:
        return Verdict(goal, text + f"; {last:,} requests reached within the time bound", None)
    return Verdict(goal, text, value <= 1.10)
