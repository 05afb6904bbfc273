"""The figures match a series computed by hand."""

from __future__ import annotations

import math
from datetime import date

import pytest

from glasskey.research.inputs import PricePoint
from glasskey.research.metrics import compute_metrics, max_drawdown


def points(values: list[float], month0: int = 1) -> list[PricePoint]:
    return [PricePoint(date(2020, month0 + i, 1), v) for i, v in enumerate(values)]


def test_metrics_match_a_hand_computed_monthly_series():
    # Closes 100, 110, 99, 121: returns +10%, -10%, +22.222...%
    table = compute_metrics({"AAA": points([100, 110, 99, 121])}, risk_free_rate=0.0, sources={"AAA": "a.csv"})
    row = table.symbols[0]
    returns = [0.10, -0.10, 121 / 99 - 1]
    mean = sum(returns) / 3
    stdev = math.sqrt(sum((r - mean) ** 2 for r in returns) / 2)
    years = (date(2020, 4, 1) - date(2020, 1, 1)).days / 365.25
    assert table.frequency == "monthly" and table.periods_per_year == 12
    assert row.total_return == pytest.approx(0.21)
    assert row.annualised_return == pytest.approx(1.21 ** (1 / years) - 1)
    assert row.annualised_volatility == pytest.approx(stdev * math.sqrt(12))
    assert row.max_drawdown == pytest.approx(99 / 110 - 1)
    assert row.sharpe == pytest.approx(mean / stdev * math.sqrt(12))


def test_sharpe_subtracts_the_risk_free_rate_per_period():
    series = {"AAA": points([100, 110, 99, 121])}
    plain = compute_metrics(series, risk_free_rate=0.0, sources={}).symbols[0]
    with_rate = compute_metrics(series, risk_free_rate=0.12, sources={}).symbols[0]
    assert plain.sharpe is not None and with_rate.sharpe is not None
    stdev = plain.annualised_volatility / math.sqrt(12)
    assert plain.sharpe - with_rate.sharpe == pytest.approx(0.01 / stdev * math.sqrt(12))


def test_series_are_aligned_on_common_dates_before_correlation():
    a = points([100, 110, 99, 121])
    b = points([50, 55, 49.5, 60.5, 70])  # one more month than a
    table = compute_metrics({"AAA": a, "BBB": b}, risk_free_rate=0.0, sources={})
    assert table.points == 4 and table.end == "2020-04-01"
    assert table.correlation["AAA"]["BBB"] == pytest.approx(1.0)
    assert table.normalised["BBB"][-1][0] == "2020-04-01"
    assert table.normalised["BBB"][-1][1] == pytest.approx(121.0)


def test_drawdown_is_the_deepest_fall_from_a_running_peak():
    assert max_drawdown([10, 12, 6, 11, 13, 9.1]) == pytest.approx(-0.5)
    assert max_drawdown([1, 2, 3]) == 0.0
