"""Formatting integer micros as dollars, exactly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from glasskey.money import MICROS_PER_DOLLAR, dollars_to_micros, format_micros


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (0, "0.000000"),
        (1, "0.000001"),
        (150_000, "0.150000"),
        (1_500_000, "1.500000"),
        (MICROS_PER_DOLLAR, "1.000000"),
        (123_456_789_012, "123456.789012"),
        (-1, "-0.000001"),
        (-1_500_000, "-1.500000"),
    ],
)
def test_micros_are_shown_as_dollars_with_all_six_decimals(micros: int, text: str) -> None:
    assert format_micros(micros) == text


@given(st.integers(-(10**15), 10**15))
def test_formatted_dollars_parse_back_to_the_same_micros(micros: int) -> None:
    assert dollars_to_micros(format_micros(micros)) == micros
