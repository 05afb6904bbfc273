"""The simulated upstream: OpenAI's exact shapes, deterministic text, honest counts, failure modes."""

from __future__ import annotations

import asyncio
from typing import Any

import pydantic
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from glasskey.providers.base import ChatResult, ProviderError, RouteTarget, StreamCut, Usage
from glasskey.providers.simulated import SimulatedProvider, count_tokens
from glasskey.providers.sse import PAUSE


class FakeSleep:
    """Records requested delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def make_target(**options: Any) -> RouteTarget:
    return RouteTarget(
        route_id="route-1",
        provider="simulated",
        base_url="simulated://",
        upstream_model="sim-model-1",
        credential="sk-secret-never-shown",
        options=options,
    )


def make_body(prompt: str = "Tell me about token gateways.", **extra: Any) -> dict[str, Any]:
    return {
        "model": "gpt-demo",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": prompt},
        ],
        **extra,
    }


def chat(body: dict[str, Any], target: RouteTarget | None = None, **kwargs: Any) -> ChatResult:
    provider = SimulatedProvider(sleep=kwargs.pop("sleep", FakeSleep()), **kwargs)
    return asyncio.run(provider.chat(target or make_target(), body))


def stream(body: dict[str, Any], target: RouteTarget | None = None, **kwargs: Any) -> list[dict[str, Any]]:
    provider = SimulatedProvider(sleep=kwargs.pop("sleep", FakeSleep()), **kwargs)

    async def collect() -> list[dict[str, Any]]:
        stream = provider.stream_chat(target or make_target(), body)
        return [chunk async for chunk in stream if isinstance(chunk, dict)]

    return asyncio.run(collect())


def stream_until_error(body: dict[str, Any], target: RouteTarget) -> tuple[list[dict[str, Any]], ProviderError]:
    provider = SimulatedProvider(sleep=FakeSleep())
    received: list[dict[str, Any]] = []

    async def collect() -> None:
        async for chunk in provider.stream_chat(target, body):
            assert isinstance(chunk, dict)  # no PAUSE unless asked for
            received.append(chunk)

    with pytest.raises(ProviderError) as caught:
        asyncio.run(collect())
    return received, caught.value


def assert_no_extra_keys(model: pydantic.BaseModel, path: str = "$") -> None:
    """The openai types accept unknown keys silently; a misnamed field must fail here."""
    assert not model.model_extra, f"unknown keys at {path}: {sorted(model.model_extra or {})}"
    for name in type(model).model_fields:
        value = getattr(model, name)
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if isinstance(item, pydantic.BaseModel):
                assert_no_extra_keys(item, f"{path}.{name}[{i}]" if isinstance(value, list) else f"{path}.{name}")


def validate_completion(body: dict[str, Any]) -> ChatCompletion:
    assert set(body) <= set(ChatCompletion.model_fields)
    parsed = ChatCompletion.model_validate(body)
    assert_no_extra_keys(parsed)
    return parsed


def validate_chunk(chunk: dict[str, Any]) -> ChatCompletionChunk:
    assert set(chunk) <= set(ChatCompletionChunk.model_fields)
    parsed = ChatCompletionChunk.model_validate(chunk)
    assert_no_extra_keys(parsed)
    return parsed


def content_of(result: ChatResult, index: int = 0) -> str:
    content = result.body["choices"][index]["message"]["content"]
    assert isinstance(content, str)
    return content


# --- shape and determinism ---------------------------------------------------------------


def test_body_is_an_exact_openai_chat_completion() -> None:
    result = chat(make_body())
    parsed = validate_completion(result.body)
    assert set(result.body) == {"id", "object", "created", "model", "choices", "usage", "system_fingerprint"}
    assert parsed.id.startswith("chatcmpl-sim-")
    assert parsed.object == "chat.completion"
    assert isinstance(result.body["created"], int)
    assert parsed.model == "sim-model-1"
    assert parsed.system_fingerprint
    choice = result.body["choices"][0]
    assert set(choice) == {"index", "message", "logprobs", "finish_reason"}
    assert choice["message"] == {
        "role": "assistant",
        "content": choice["message"]["content"],
        "refusal": None,
    }
    assert result.body["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}
    assert result.body["usage"]["completion_tokens_details"] == {"reasoning_tokens": 0}


def test_same_request_same_text_and_different_prompt_different_text() -> None:
    first = content_of(chat(make_body("What is a ledger?")))
    again = content_of(chat(make_body("What is a ledger?"), rng_seed=99))
    other = content_of(chat(make_body("What is a receipt?")))
    assert first == again
    assert first != other
    assert len(first.split()) > 5


def test_text_depends_on_the_upstream_model() -> None:
    target = make_target()
    other_model = RouteTarget("route-2", "simulated", "simulated://", "sim-model-2", None, {})
    assert content_of(chat(make_body(), target)) != content_of(chat(make_body(), other_model))


def test_default_length_is_between_20_and_120_tokens_and_ends_with_stop() -> None:
    for i in range(25):
        result = chat(make_body(f"prompt number {i}"))
        assert 20 <= result.body["usage"]["completion_tokens"] <= 120
        assert result.body["choices"][0]["finish_reason"] == "stop"
        assert content_of(result).endswith(".")


def test_credential_never_appears() -> None:
    result = chat(make_body())
    assert "sk-secret" not in repr(result.body)
    chunks = stream(make_body())
    assert "sk-secret" not in repr(chunks)
    _, error = stream_until_error(make_body(), make_target(fail_status=401))
    assert "sk-secret" not in str(error)


# --- token counting -------------------------------------------------------------------------


def test_count_tokens_approximates_bpe() -> None:
    assert count_tokens("") == 0
    assert count_tokens("   ") == 0
    assert count_tokens("the") == 1
    assert count_tokens("tokenizer") == 3  # ceil(9 / 4)
    assert count_tokens("Hi, you!") == 4
    assert count_tokens("Hello, world!") == 6  # 2 + 1 + 2 + 1
    assert count_tokens("日本語") == 3
    assert count_tokens("a b c") == 3


def test_usage_matches_count_tokens_and_prompt_formula() -> None:
    result = chat(make_body("Tell me about token gateways."))
    usage = result.body["usage"]
    expected_prompt = (count_tokens("You are terse.") + 4) + (count_tokens("Tell me about token gateways.") + 4) + 3
    assert usage["prompt_tokens"] == expected_prompt
    assert usage["completion_tokens"] == count_tokens(content_of(result))
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert result.usage == Usage(expected_prompt, usage["completion_tokens"], 0)


def test_prompt_tokens_count_text_parts_and_images() -> None:
    body = {
        "model": "gpt-demo",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ],
            }
        ],
    }
    result = chat(body)
    assert result.body["usage"]["prompt_tokens"] == count_tokens("What is in this picture?") + 85 + 4 + 3
    validate_completion(result.body)


# --- length control -----------------------------------------------------------------------


@pytest.mark.parametrize("key", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_caps_and_reports_length(key: str) -> None:
    body = make_body()
    body[key] = 7
    result = chat(body)
    assert result.body["usage"]["completion_tokens"] == 7
    assert count_tokens(content_of(result)) == 7
    assert result.body["choices"][0]["finish_reason"] == "length"
    validate_completion(result.body)


def test_large_max_tokens_does_not_cap() -> None:
    result = chat(make_body(max_tokens=4000))
    assert result.body["usage"]["completion_tokens"] <= 120
    assert result.body["choices"][0]["finish_reason"] == "stop"


def test_output_tokens_max_fills_the_budget_exactly() -> None:
    target = make_target(output_tokens="max")
    for budget in (1, 50, 333):
        result = chat(make_body(max_tokens=budget), target)
        assert result.body["usage"]["completion_tokens"] == budget
        assert count_tokens(content_of(result)) == budget
        assert result.usage is not None and result.usage.output_tokens == budget


def test_stop_sequence_cuts_text() -> None:
    full = content_of(chat(make_body()))
    words = full.split()
    stop_word = " " + words[4]
    for stop in (stop_word, [stop_word, "zzz-never"]):
        result = chat(make_body(stop=stop))
        text = content_of(result)
        assert text == full[: full.index(stop_word)]
        assert stop_word not in text
        assert result.body["choices"][0]["finish_reason"] == "stop"
        assert result.body["usage"]["completion_tokens"] == count_tokens(text)


def test_stop_sequence_overrides_length() -> None:
    full = content_of(chat(make_body(max_tokens=10)))
    stop = " " + full.split()[2]
    result = chat(make_body(max_tokens=10, stop=stop))
    assert result.body["choices"][0]["finish_reason"] == "stop"
    assert content_of(result) == full[: full.index(stop)]


def test_n_choices_differ_and_usage_sums_them() -> None:
    result = chat(make_body(n=3))
    validate_completion(result.body)
    choices = result.body["choices"]
    assert [c["index"] for c in choices] == [0, 1, 2]
    texts = [c["message"]["content"] for c in choices]
    assert len(set(texts)) == 3
    assert texts[0] == content_of(chat(make_body()))
    assert result.body["usage"]["completion_tokens"] == sum(count_tokens(t) for t in texts)


# --- streaming ----------------------------------------------------------------------------


def stream_text(chunks: list[dict[str, Any]], index: int = 0) -> str:
    return "".join(
        choice["delta"].get("content") or ""
        for chunk in chunks
        for choice in chunk["choices"]
        if choice["index"] == index
    )


@pytest.mark.parametrize("include_usage", [True, False])
def test_stream_chunk_sequence(include_usage: bool) -> None:
    body = make_body(stream=True, stream_options={"include_usage": include_usage})
    chunks = stream(body)
    for chunk in chunks:
        validate_chunk(chunk)
        assert chunk["object"] == "chat.completion.chunk"
        assert ("usage" in chunk) == (include_usage or chunk is chunks[-1])
    assert len({(c["id"], c["created"], c["model"], c["system_fingerprint"]) for c in chunks}) == 1
    assert chunks[0]["id"].startswith("chatcmpl-sim-")
    assert chunks[0]["model"] == "sim-model-1"

    first, *content, finish, usage = chunks
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert first["choices"][0]["finish_reason"] is None
    assert len(content) >= 2
    for chunk in content:
        assert set(chunk["choices"][0]["delta"]) == {"content"}
        assert chunk["choices"][0]["finish_reason"] is None
        assert chunk.get("usage") is None
    assert finish["choices"][0]["delta"] == {}
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert usage["choices"] == []
    assert usage["usage"] is not None


def test_stream_matches_non_stream_text_and_usage() -> None:
    for extra in ({}, {"max_tokens": 9}, {"stop": " the"}, {"n": 2}):
        plain = chat(make_body(**extra))
        chunks = stream(make_body(stream=True, stream_options={"include_usage": True}, **extra))
        for index, choice in enumerate(plain.body["choices"]):
            assert stream_text(chunks, index) == choice["message"]["content"]
            finishes = [c for ch in chunks for c in ch["choices"] if c["index"] == index and c["finish_reason"]]
            assert [c["finish_reason"] for c in finishes] == [choice["finish_reason"]]
        assert chunks[-1]["usage"] == plain.body["usage"]


def test_stream_n_choices_each_get_role_and_finish() -> None:
    chunks = stream(make_body(n=2, stream=True))
    for chunk in chunks:
        validate_chunk(chunk)
        assert len(chunk["choices"]) <= 1
    roles = [c["choices"][0]["index"] for c in chunks if c["choices"] and "role" in c["choices"][0]["delta"]]
    finishes = [c["choices"][0]["index"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert roles == [0, 1]
    assert finishes == [0, 1]
    assert stream_text(chunks, 0) != stream_text(chunks, 1)


# --- latency ------------------------------------------------------------------------------


def test_latency_before_first_byte_non_stream() -> None:
    sleep = FakeSleep()
    chat(make_body(), make_target(latency_ms=250), sleep=sleep)
    assert sleep.delays == [0.25]


def test_no_sleep_without_latency() -> None:
    sleep = FakeSleep()
    chat(make_body(), sleep=sleep)
    stream(make_body(), sleep=sleep)
    assert sleep.delays == []


def test_stream_latency_and_chunk_delay() -> None:
    sleep = FakeSleep()
    chunks = stream(make_body(), make_target(latency_ms=300, chunk_delay_ms=20), sleep=sleep)
    assert sleep.delays[0] == 0.3
    assert sleep.delays[1:] == [0.02] * (len(chunks) - 1)


# --- failure modes ------------------------------------------------------------------------


def test_error_rate_one_always_fails_with_500() -> None:
    provider = SimulatedProvider(sleep=FakeSleep(), rng_seed=1)
    target = make_target(error_rate=1.0)
    for _ in range(5):
        with pytest.raises(ProviderError) as caught:
            asyncio.run(provider.chat(target, make_body()))
        assert caught.value.status == 500
        assert caught.value.error_type == "server_error"
        assert caught.value.message == "simulated upstream error"
        assert caught.value.retriable
    chunks, error = stream_until_error(make_body(), target)
    assert chunks == []
    assert error.status == 500


def test_error_rate_is_a_share_and_reproducible_with_a_seed() -> None:
    def outcomes(seed: int) -> list[bool]:
        provider = SimulatedProvider(sleep=FakeSleep(), rng_seed=seed)
        target = make_target(error_rate=0.3)
        results = []
        for _ in range(200):
            try:
                asyncio.run(provider.chat(target, make_body()))
                results.append(True)
            except ProviderError:
                results.append(False)
        return results

    first = outcomes(7)
    assert first == outcomes(7)
    assert 30 <= first.count(False) <= 90


def test_error_rate_zero_never_fails() -> None:
    provider = SimulatedProvider(sleep=FakeSleep(), rng_seed=3)
    for _ in range(20):
        asyncio.run(provider.chat(make_target(error_rate=0.0), make_body()))


def test_fail_status_429_carries_retry_after() -> None:
    with pytest.raises(ProviderError) as caught:
        chat(make_body(), make_target(fail_status=429, retry_after="7"))
    assert caught.value.status == 429
    assert caught.value.error_type == "rate_limit_error"
    assert caught.value.retry_after == "7"
    assert caught.value.retriable

    with pytest.raises(ProviderError) as default:
        chat(make_body(), make_target(fail_status=429))
    assert default.value.retry_after == "1"


@pytest.mark.parametrize(("status", "retriable"), [(400, False), (401, False), (500, True), (503, True)])
def test_fail_status_uses_that_status(status: int, retriable: bool) -> None:
    with pytest.raises(ProviderError) as caught:
        chat(make_body(), make_target(fail_status=status))
    assert caught.value.status == status
    assert caught.value.retriable is retriable
    assert caught.value.retry_after is None
    chunks, error = stream_until_error(make_body(), make_target(fail_status=status))
    assert chunks == []
    assert error.status == status


def test_timeout_sleeps_then_raises_504() -> None:
    sleep = FakeSleep()
    with pytest.raises(ProviderError) as caught:
        chat(make_body(), make_target(timeout=True, timeout_ms=1500), sleep=sleep)
    assert caught.value.status == 504
    assert caught.value.timeout
    assert caught.value.error_type == "timeout"
    assert caught.value.message == "simulated upstream timeout"
    assert sleep.delays == [1.5]

    default_sleep = FakeSleep()
    with pytest.raises(ProviderError):
        chat(make_body(), make_target(timeout=True), sleep=default_sleep)
    assert default_sleep.delays == [30.0]

    chunks, error = stream_until_error(make_body(), make_target(timeout=True))
    assert chunks == []
    assert error.timeout


@pytest.mark.parametrize("cut_after", [0, 1, 3])
def test_cut_stream_after_chunks(cut_after: int) -> None:
    chunks, error = stream_until_error(make_body(), make_target(cut_stream_after_chunks=cut_after))
    assert isinstance(error, StreamCut)
    assert error.status == 502
    assert error.error_type == "stream_cut"
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    content = chunks[1:]
    assert len(content) == cut_after
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks)
    assert all("usage" not in c for c in chunks)


def test_cut_when_the_answer_has_exactly_that_many_chunks() -> None:
    total = len(stream(make_body())) - 3  # role, finish and usage chunks
    chunks, error = stream_until_error(make_body(), make_target(cut_stream_after_chunks=total))
    assert isinstance(error, StreamCut)
    assert len(chunks) == 1 + total


def test_cut_beyond_the_answer_never_happens() -> None:
    chunks = stream(make_body(), make_target(cut_stream_after_chunks=10_000))
    assert chunks[-1]["usage"] is not None


def test_cut_is_ignored_without_streaming() -> None:
    result = chat(make_body(), make_target(cut_stream_after_chunks=1))
    validate_completion(result.body)


@pytest.mark.parametrize("pauses", [True, False])
def test_a_paced_stream_says_pause_before_each_wait_only_when_asked(pauses: bool):
    provider = SimulatedProvider(sleep=FakeSleep())
    target = make_target(chunk_delay_ms=20)

    async def collect() -> list[Any]:
        return [item async for item in provider.stream_chat(target, make_body(), pauses=pauses)]

    items = asyncio.run(collect())
    chunks = [item for item in items if isinstance(item, dict)]
    assert isinstance(items[0], dict), "nothing to flush before the first chunk"
    assert items.count(PAUSE) == (len(chunks) - 1 if pauses else 0)
