"""Usage an upstream reports is data, not trust: junk counts are no counts, huge ones are clamped.

Every provider's parsing goes through ``token_count``, and whatever chunk the relay re-serialises
still serialises (orjson refuses integers beyond 64 bits).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from glasskey.gateway.outcomes import sse
from glasskey.gateway.usage import text_of_body, text_of_delta, usage_from_openai
from glasskey.providers import anthropic_translate, gemini_translate
from glasskey.providers.base import TOKEN_COUNT_MAX, Usage, token_count
from glasskey.providers.openai import usage_body, usage_of

JUNK: list[Any] = ["12", "lots", True, None, [1], {"n": 1}, 12.5, float("nan")]


@pytest.mark.parametrize("value", JUNK, ids=repr)
def test_a_value_that_is_not_a_count_is_no_count(value: Any) -> None:
    assert token_count(value) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1e40, TOKEN_COUNT_MAX), (2**64 + 5, TOKEN_COUNT_MAX), (-1e40, -TOKEN_COUNT_MAX), (12.0, 12), (7, 7), (-3, -3)],
)
def test_counts_are_whole_numbers_clamped_to_the_documented_bound(value: Any, expected: int) -> None:
    assert token_count(value) == expected


def test_digit_strings_count_only_where_the_wire_format_writes_them() -> None:
    assert token_count("42", strings=True) == 42
    assert token_count("9" * 100_000, strings=True) is None  # never parsed: too many digits to be a count
    assert token_count("4 2", strings=True) is None


@pytest.mark.parametrize("value", JUNK, ids=repr)
def test_openai_usage_with_a_junk_count_is_missing_so_the_gateway_estimates(value: Any) -> None:
    reported = {"prompt_tokens": value, "completion_tokens": 5}
    assert usage_body(reported) is None and usage_of(reported) is None
    assert usage_from_openai(reported) is None
    assert usage_from_openai({"prompt_tokens": 5, "completion_tokens": value}) is None


def test_openai_usage_keeps_only_bounded_counts_so_it_always_serialises_again() -> None:
    deep: Any = 1
    for _ in range(400):
        deep = [deep]
    reported = {
        "prompt_tokens": 1e40,
        "completion_tokens": 2**64 - 1,
        "total_tokens": "many",
        "prompt_tokens_details": {"cached_tokens": 1e30, "note": "x", "junk": deep},
        "completion_tokens_details": [1, 2],
        "cost": {"usd": 1e40},
        "deep": deep,
    }
    body = usage_body(reported)
    assert body == {
        "prompt_tokens": TOKEN_COUNT_MAX,
        "completion_tokens": TOKEN_COUNT_MAX,
        "total_tokens": 2 * TOKEN_COUNT_MAX,
        "prompt_tokens_details": {"cached_tokens": TOKEN_COUNT_MAX},
    }
    orjson.dumps(body)
    assert usage_from_openai(reported) == Usage(TOKEN_COUNT_MAX, TOKEN_COUNT_MAX, TOKEN_COUNT_MAX)


def test_anthropic_and_gemini_usage_are_clamped_too() -> None:
    openai_usage, usage = anthropic_translate.usage_to_openai(
        {"input_tokens": 1e40, "output_tokens": "x", "cache_read_input_tokens": True}
    )
    assert usage == Usage(TOKEN_COUNT_MAX, 0, 0)
    orjson.dumps(openai_usage)
    body, usage = gemini_translate.usage_of(
        {"promptTokenCount": 1e40, "candidatesTokenCount": "7", "totalTokenCount": 2**64 - 1}
    )
    assert usage == Usage(TOKEN_COUNT_MAX, 7, 0)
    assert body["total_tokens"] == TOKEN_COUNT_MAX
    orjson.dumps(body)


def test_a_chunk_that_orjson_refuses_is_still_relayed() -> None:
    deep: Any = "x"
    for _ in range(300):
        deep = [deep]
    line = sse({"choices": [], "usage": {"prompt_tokens": 10**30}, "extra": deep})
    payload = orjson.loads(line.removeprefix(b"data: "))
    assert payload["usage"]["prompt_tokens"] == 2**63 - 1


def test_text_of_a_delta_ignores_what_is_not_text() -> None:
    assert text_of_delta("junk") == ""
    assert text_of_delta({"content": 5, "tool_calls": [7, {"function": {"name": "f", "arguments": ["x"]}}]}) == "f"
    assert text_of_body({"choices": ["x", {"message": {"content": "hi"}}]}) == "hi"
    assert text_of_body({"choices": "x"}) == ""
