"""The simulated provider bounds its own work, like any upstream, whoever calls it."""

from __future__ import annotations

import asyncio
import time

import pytest

from glasskey.providers.base import ProviderError, RouteTarget
from glasskey.providers.simulated import (
    DIMENSIONS_MAX,
    EMBEDDING_NUMBERS_MAX,
    GENERATED_TOKENS_MAX,
    SimulatedProvider,
)

TARGET = RouteTarget("rt", "simulated", "", "text-embedding-3-small", None, {})
CHAT_TARGET = RouteTarget("rt", "simulated", "", "gpt-4o-mini", None, {"output_tokens": "max"})


@pytest.mark.parametrize(
    "body",
    [
        {"input": "x", "dimensions": 1_000_000_000},
        {"input": "x", "dimensions": DIMENSIONS_MAX + 1},
        {"input": ["x"] * 2048, "dimensions": EMBEDDING_NUMBERS_MAX // 1024},
    ],
    ids=["a_billion_dimensions", "past_the_maximum", "too_many_numbers"],
)
def test_embeddings_beyond_its_limits_are_refused_at_once(body: dict[str, object]) -> None:
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        asyncio.run(SimulatedProvider().embed(TARGET, body))
    assert caught.value.status == 400 and not caught.value.retriable
    assert time.monotonic() - started < 1


def test_embeddings_at_its_limit_are_answered() -> None:
    result = asyncio.run(SimulatedProvider().embed(TARGET, {"input": "x", "dimensions": DIMENSIONS_MAX}))
    assert len(result.body["data"][0]["embedding"]) == DIMENSIONS_MAX


def test_a_huge_max_tokens_generates_at_most_its_own_maximum_per_choice() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10**12}
    result = asyncio.run(SimulatedProvider().chat(CHAT_TARGET, body))
    assert result.usage is not None and result.usage.output_tokens == GENERATED_TOKENS_MAX
