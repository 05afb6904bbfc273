"""The figures of a research report, computed by code from the price series, never by a model.

Series are aligned on the dates every symbol has; returns are simple period returns between
consecutive aligned dates. Statistics are floats (they are not money):

* total return: last close / first close - 1;
* annualised return: (1 + total) ** (1 / years) - 1, years = calendar days / 365.25;
* annualised volatility: sample standard deviation of period returns x sqrt(periods per year);
* maximum drawdown: the deepest fall from a running peak, as a negative fraction;
* Sharpe: mean(period return - rf / periods per year) / stdev(period returns) x sqrt(periods per year);
* correlation: Pearson correlation of period returns, per pair of symbols.

Periods per year come from the median spacing of the aligned dates (daily 252, weekly 52,
monthly 12, quarterly 4, else 365.25 / median days); the table says which was used.
"""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from glasskey.errors import ClientError
from glasskey.research.inputs import PricePoint


@dataclass(frozen=True)
class SymbolMetrics:
    symbol: str
    first_close: float
    last_close: float
    total_return: float
    annualised_return: float
    annualised_volatility: float
    max_drawdown: float
    sharpe: float | None  # None when the returns never vary


@dataclass(frozen=True)
class MetricsTable:
    start: str
    end: str
    points: int
    frequency: str
    periods_per_year: float
    risk_free_rate: float
    symbols: list[SymbolMetrics]
    correlation: dict[str, dict[str, float | None]]
    normalised: dict[str, list[tuple[str, float]]]  # per symbol: (date, close rebased to 100)
    sources: dict[str, str]  # symbol -> file it came from

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MetricsTable:
        values = dict(data)
        values["symbols"] = [SymbolMetrics(**s) for s in data["symbols"]]
        values["normalised"] = {k: [(d, v) for d, v in pts] for k, pts in data["normalised"].items()}
        return cls(**values)


def align(series: dict[str, list[PricePoint]]) -> tuple[list[str], dict[str, list[float]]]:
    """The dates every symbol has, and each symbol's closes on them."""
    common = set.intersection(*(set(p.day for p in points) for points in series.values()))
    dates = sorted(common)
    if len(dates) < 2:
        raise ClientError(
            f"The price series share {len(dates)} date(s); at least two common dates are needed",
            code="invalid_research_input",
        )
    closes = {}
    for symbol, points in series.items():
        by_day = {p.day: p.close for p in points}
        closes[symbol] = [by_day[d] for d in dates]
    return [d.isoformat() for d in dates], closes


def frequency_of(dates: list[str]) -> tuple[str, float]:
    days = [date.fromisoformat(d) for d in dates]
    gaps = [(b - a).days for a, b in itertools.pairwise(days)]
    median = statistics.median(gaps)
    if median <= 4:
        return "daily", 252.0
    if median <= 10:
        return "weekly", 52.0
    if median <= 40:
        return "monthly", 12.0
    if median <= 120:
        return "quarterly", 4.0
    return f"every {median:g} days", 365.25 / median


def period_returns(closes: list[float]) -> list[float]:
    return [b / a - 1.0 for a, b in itertools.pairwise(closes)]


def max_drawdown(closes: list[float]) -> float:
    peak = closes[0]
    deepest = 0.0
    for close in closes:
        peak = max(peak, close)
        deepest = min(deepest, close / peak - 1.0)
    return deepest


def correlation(a: list[float], b: list[float]) -> float | None:
    if len(a) < 2:
        return None
    mean_a, mean_b = statistics.fmean(a), statistics.fmean(b)
    cov = sum((x - mean_a) * (y - mean_b) for x, y in zip(a, b, strict=True))
    var_a = sum((x - mean_a) ** 2 for x in a)
    var_b = sum((y - mean_b) ** 2 for y in b)
    if var_a == 0 or var_b == 0:
        return None
    return cov / math.sqrt(var_a * var_b)


def compute_metrics(
    series: dict[str, list[PricePoint]], *, risk_free_rate: float, sources: dict[str, str]
) -> MetricsTable:
    dates, closes = align(series)
    frequency, per_year = frequency_of(dates)
    years = (date.fromisoformat(dates[-1]) - date.fromisoformat(dates[0])).days / 365.25
    returns = {symbol: period_returns(values) for symbol, values in closes.items()}
    rows = []
    for symbol in sorted(closes):
        values, rets = closes[symbol], returns[symbol]
        total = values[-1] / values[0] - 1.0
        stdev = statistics.stdev(rets) if len(rets) >= 2 else 0.0
        excess = [r - risk_free_rate / per_year for r in rets]
        rows.append(
            SymbolMetrics(
                symbol=symbol,
                first_close=values[0],
                last_close=values[-1],
                total_return=total,
                annualised_return=(1.0 + total) ** (1.0 / years) - 1.0 if years > 0 else total,
                annualised_volatility=stdev * math.sqrt(per_year),
                max_drawdown=max_drawdown(values),
                sharpe=statistics.fmean(excess) / stdev * math.sqrt(per_year) if stdev > 0 else None,
            )
        )
    symbols = sorted(closes)
    matrix = {a: {b: correlation(returns[a], returns[b]) for b in symbols} for a in symbols}
    normalised = {s: [(d, 100.0 * c / closes[s][0]) for d, c in zip(dates, closes[s], strict=True)] for s in symbols}
    return MetricsTable(
        start=dates[0],
        end=dates[-1],
        points=len(dates),
        frequency=frequency,
        periods_per_year=per_year,
        risk_free_rate=risk_free_rate,
        symbols=rows,
        correlation=matrix,
        normalised=normalised,
        sources=sources,
    )


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table_text(table: MetricsTable) -> str:
    """The table as the deep model reads it (and as the report prints it): fixed formatting."""
    lines = [
        f"Data window: {table.start} to {table.end}, {table.points} aligned {table.frequency} points; "
        f"risk-free rate {percent(table.risk_free_rate)} a year.",
        "",
        "| symbol | total return | annualised return | annualised volatility | max drawdown | Sharpe | source |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in table.symbols:
        lines.append(
            f"| {row.symbol} | {percent(row.total_return)} | {percent(row.annualised_return)} | "
            f"{percent(row.annualised_volatility)} | {percent(row.max_drawdown)} | {ratio(row.sharpe)} | "
            f"{table.sources.get(row.symbol, '-')} |"
        )
    if len(table.symbols) > 1:
        names = [row.symbol for row in table.symbols]
        lines.append("")
        lines.append("| correlation | " + " | ".join(names) + " |")
        lines.append("| --- |" + " --- |" * len(names))
        for a in names:
            lines.append(f"| {a} | " + " | ".join(ratio(table.correlation[a][b]) for b in names) + " |")
    return "\n".join(lines)
