"""Money's one rounding rule, token estimates and bounds, and metering of usage into charges."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from glasskey.money import charge_micros, dollars_to_micros
from glasskey.pricing.catalog import Prices
from glasskey.pricing.metering import charge_for, max_charge
from glasskey.pricing.tokens import (
    IMAGE_TOKENS_MAX,
    TOKENS_PER_MESSAGE,
    TOKENS_PER_REQUEST,
    chat_input_tokens,
    embedding_input_tokens,
    max_output_tokens,
)
from glasskey.providers.base import Usage

MINI = Prices(input_per_mtok_micros=150_000, output_per_mtok_micros=600_000, cached_per_mtok_micros=75_000)

# -- money -------------------------------------------------------------------------------


def test_one_token_at_a_cheap_price_costs_one_micro_not_zero() -> None:
    assert charge_micros((1, 150_000)) == 1


def test_a_million_tokens_cost_exactly_the_price_per_million() -> None:
    assert charge_micros((1_000_000, 150_000)) == 150_000


def test_a_charge_is_rounded_up_once_for_the_whole_request_not_once_per_part() -> None:
    # 1 input token and 1 output token: 0.15 + 0.60 = 0.75 micros, rounded up once to 1.
    assert charge_micros((1, 150_000), (1, 600_000)) == 1
    assert charge_micros((1, 150_000)) + charge_micros((1, 600_000)) == 2


def test_nothing_used_costs_nothing() -> None:
    assert charge_micros() == 0
    assert charge_micros((0, 150_000), (10, 0)) == 0


def test_negative_tokens_or_prices_are_refused() -> None:
    with pytest.raises(ValueError):
        charge_micros((-1, 150_000))
    with pytest.raises(ValueError):
        charge_micros((1, -150_000))


@given(st.lists(st.tuples(st.integers(0, 10**8), st.integers(0, 10**9)), max_size=4))
def test_a_charge_is_never_below_the_exact_cost_nor_a_micro_above_it(parts: list[tuple[int, int]]) -> None:
    exact = sum(Decimal(tokens) * price for tokens, price in parts) / 1_000_000
    charged = charge_micros(*parts)
    assert isinstance(charged, int)
    assert exact <= charged < exact + 1


@pytest.mark.parametrize(
    ("text", "micros"),
    [("0.15", 150_000), ("2.50", 2_500_000), ("0.000001", 1), ("10", 10_000_000), ("0", 0), ("1e-6", 1)],
)
def test_dollars_in_text_become_exact_micros(text: str, micros: int) -> None:
    assert dollars_to_micros(text) == micros


def test_dollars_as_int_or_decimal_become_micros() -> None:
    assert dollars_to_micros(3) == 3_000_000
    assert dollars_to_micros(Decimal("0.075")) == 75_000


def test_dollars_as_a_float_are_refused() -> None:
    with pytest.raises(TypeError):
        dollars_to_micros(0.15)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["0.0000001", "0.1234567", "1e-7"])
def test_dollars_finer_than_a_micro_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="precision"):
        dollars_to_micros(text)


# -- token estimates and bounds ------------------------------------------------------------


def chat(*contents: Any, **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": c} for c in contents], **extra}


@given(st.lists(st.text(max_size=200), min_size=1, max_size=5))
def test_the_input_bound_covers_every_utf8_byte_and_is_at_least_the_estimate(texts: list[str]) -> None:
    tokens = chat_input_tokens(chat(*texts))
    byte_count = sum(len(t.encode()) for t in texts)
    assert tokens.upper_bound >= byte_count + TOKENS_PER_MESSAGE * len(texts) + TOKENS_PER_REQUEST
    assert tokens.upper_bound >= tokens.estimate >= 0


def test_multibyte_text_is_bounded_by_its_bytes_not_its_characters() -> None:
    text = "日本語のテキスト" * 10  # 80 characters, 240 bytes
    tokens = chat_input_tokens(chat(text))
    assert tokens.upper_bound == 240 + TOKENS_PER_MESSAGE + TOKENS_PER_REQUEST
    assert tokens.estimate == 20 + TOKENS_PER_MESSAGE + TOKENS_PER_REQUEST


def test_images_tools_and_tool_calls_count_toward_the_input() -> None:
    plain = chat_input_tokens(chat([{"type": "text", "text": "look"}]))
    with_image = chat_input_tokens(
        chat([{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}])
    )
    assert with_image.upper_bound - plain.upper_bound == IMAGE_TOKENS_MAX
    assert with_image.estimate > plain.estimate
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    assert chat_input_tokens(chat("hi", tools=tools)).upper_bound > chat_input_tokens(chat("hi")).upper_bound
    call = {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "function": {"name": "lookup"}}]}
    with_call = chat_input_tokens({"messages": [call]})
    assert with_call.upper_bound > TOKENS_PER_MESSAGE + TOKENS_PER_REQUEST


def test_embedding_token_id_arrays_add_exactly_one_token_per_id() -> None:
    tokens = embedding_input_tokens({"input": [[1, 2, 3], [4, 5]]})
    assert (tokens.estimate, tokens.upper_bound) == (5 + TOKENS_PER_REQUEST, 5 + TOKENS_PER_REQUEST)
    text = embedding_input_tokens({"input": ["héllo", "world"]})
    assert text.upper_bound == len("héllo".encode()) + len(b"world") + TOKENS_PER_REQUEST
    assert embedding_input_tokens({"input": "abcd"}).estimate == 1 + TOKENS_PER_REQUEST


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, 16_384),
        ({"max_tokens": 100}, 100),
        ({"max_completion_tokens": 200, "max_tokens": 100}, 200),
        ({"max_completion_tokens": 1_000_000}, 16_384),
        ({"max_tokens": 100, "n": 3}, 300),
        ({"n": 2}, 32_768),
    ],
    ids=["model_max", "max_tokens", "max_completion_tokens_wins", "capped_at_model", "times_n", "model_max_times_n"],
)
def test_max_output_tokens_honours_the_request_and_caps_at_the_model(body: dict[str, Any], expected: int) -> None:
    assert max_output_tokens(body, 16_384) == expected


# -- metering ------------------------------------------------------------------------------


def test_cached_input_tokens_are_billed_at_the_cached_price() -> None:
    usage = Usage(input_tokens=1_000_000, output_tokens=0, cached_tokens=400_000)
    # 600_000 uncached at 0.15 $/Mtok + 400_000 cached at 0.075 $/Mtok.
    assert charge_for(usage, MINI) == 90_000 + 30_000


def test_a_full_usage_is_billed_input_plus_cached_plus_output() -> None:
    usage = Usage(input_tokens=2_000_000, output_tokens=500_000, cached_tokens=1_000_000)
    assert charge_for(usage, MINI) == 150_000 + 75_000 + 300_000


def test_more_cached_tokens_than_input_tokens_are_not_billed_twice() -> None:
    usage = Usage(input_tokens=100, output_tokens=0, cached_tokens=1_000_000)
    assert charge_for(usage, MINI) == charge_micros((100, MINI.cached_per_mtok_micros))


def test_negative_usage_from_a_confused_upstream_is_billed_as_zero() -> None:
    assert charge_for(Usage(input_tokens=-5, output_tokens=-5, cached_tokens=-5), MINI) == 0


@given(
    input_bound=st.integers(0, 10**6),
    output_bound=st.integers(0, 10**5),
    data=st.data(),
    prices=st.builds(Prices, st.integers(0, 10**8), st.integers(0, 10**8), st.integers(0, 10**8)),
)
def test_the_maximum_charge_covers_any_usage_within_the_bounds(
    input_bound: int, output_bound: int, data: st.DataObject, prices: Prices
) -> None:
    used_input = data.draw(st.integers(0, input_bound))
    usage = Usage(
        input_tokens=used_input,
        output_tokens=data.draw(st.integers(0, output_bound)),
        cached_tokens=data.draw(st.integers(0, used_input)),
    )
    assert charge_for(usage, prices) <= max_charge(input_bound, output_bound, prices)
