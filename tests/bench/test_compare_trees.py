"""``bench.compare_trees``'s interleaved mode: ratios are taken within each pair of windows."""

from __future__ import annotations

import pytest
from bench.compare_trees import Window, paired_summary


def test_ratios_are_taken_pair_by_pair_then_their_median() -> None:
    # The machine slows down over the run: each pair ran at its own speed, and the after tree is
    # 0.9x of the before one in every pair. A ratio of the medians (800 / 1,000) would be off.
    before = [Window(1000, 1.0, 10.0), Window(500, 2.0, 20.0), Window(2000, 0.5, 5.0), Window(400, 2.5, 25.0)]
    after = [Window(900, 1.1, 11.0), Window(450, 2.2, 22.0), Window(1800, 0.55, 5.5), Window(360, 2.75, 27.5)]
    got = paired_summary(after, before)
    assert got["ratio"] == pytest.approx(0.9)
    assert got["ratio_q1"] == pytest.approx(0.9) and got["ratio_q3"] == pytest.approx(0.9)
    assert got["cpu_ratio"] == pytest.approx(1.1)
    assert got["before_rps"] == 750 and got["after_rps"] == 675
    assert got["p50_rise"] == pytest.approx(1.5)  # the median of 1.0, 2.0, 0.5 and 2.5


def test_the_quartiles_show_the_spread() -> None:
    before = [Window(1000, 1.0, 10.0)] * 4
    after = [Window(rps, 1.0, 10.0) for rps in (800, 900, 1000, 1100)]
    got = paired_summary(after, before)
    assert got["ratio"] == pytest.approx(0.95)
    assert got["ratio_q1"] < 0.9 < 1.0 < got["ratio_q3"]


def test_windows_must_pair_up() -> None:
    with pytest.raises(ValueError, match="two pairs"):
        paired_summary([Window(1, 1, 1)], [Window(1, 1, 1)])
    with pytest.raises(ValueError):
        paired_summary([Window(1, 1, 1)] * 3, [Window(1, 1, 1)] * 2)
