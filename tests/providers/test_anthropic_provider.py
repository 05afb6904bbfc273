"""The anthropic provider: translation both ways, streaming event by event, and the whole gateway
in front of a fake Messages API that checks every request against the ``anthropic`` SDK's types,
driven by the official ``openai`` SDK as a user would drive it."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from openai import OpenAI
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessageFunctionToolCall
from pydantic import TypeAdapter
from sqlalchemy import MetaData, select

from conftest_helpers import make_settings
from fake_anthropic import (
    DEFAULT_REPLY,
    DEFAULT_RETRY_AFTER,
    ERROR_TYPES,
    Answer,
    FakeAnthropic,
    fixture,
    message_body,
    stream_events,
    validate_request,
)
from fake_upstreams import upstream_route
from gateway_fixtures import ServerThread, free_port
from glasskey.app import build_app
from glasskey.errors import ClientError
from glasskey.keys.policy import KeyPolicy
from glasskey.keys.service import create_key, get_key, update_key
from glasskey.ledger import audit
from glasskey.orgs.service import create_org, top_up
from glasskey.pricing.catalog import Prices, get_model
from glasskey.pricing.metering import charge_for
from glasskey.providers.anthropic import AnthropicProvider, messages_url
from glasskey.providers.anthropic_translate import (
    DEFAULT_MAX_TOKENS,
    StreamTranslator,
    from_message,
    to_messages_request,
    usage_to_openai,
)
from glasskey.providers.base import Provider, ProviderError, RouteTarget, StreamCut, Usage
from glasskey.providers.http import UpstreamHTTP
from glasskey.providers.simulated import SimulatedProvider
from glasskey.providers.sse import Event, SSEParser
from glasskey.routing.routes import create_route, update_route
from glasskey.services import Services, build_services
from scripted_upstream import Answer as Scripted
from scripted_upstream import Seen, body_of, scripted_upstream

CANARY = f"sk-ant-canary-{uuid.uuid4().hex}"
MODEL = "claude-sonnet-4-5"  # served by the fake
SLOW_MODEL = "claude-haiku-4-5"  # a route that gives up after 150 ms without a first byte
DOWN_MODEL = "claude-opus-4-1"  # a route to a closed port
EMBEDDING_MODEL = "text-embedding-3-small"
PNG_DATA_URL = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
)
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather now in a city.",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    },
}


def user(text: str) -> Any:
    return {"role": "user", "content": text}


def translated(messages: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """The Messages body for an OpenAI body, checked against the SDK's types like the real API."""
    request = to_messages_request({"model": MODEL, "messages": messages, **fields}, MODEL)
    assert validate_request(request) == []
    return request


def recorded_events(name: str) -> list[Event]:
    parser = SSEParser()
    return [*parser.feed(fixture(name).encode()), *parser.close()]


def translate_stream(events: list[Event]) -> tuple[list[dict[str, Any]], StreamTranslator]:
    translator = StreamTranslator(created=1700000000, model=MODEL)
    chunks = [chunk for event in events for chunk in translator.feed(event.event, event.data)]
    return chunks, translator


def merged_tool_calls(chunks: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            for delta in choice["delta"].get("tool_calls") or ():
                call = calls.setdefault(delta["index"], {"id": None, "name": None, "arguments": ""})
                call["id"] = delta.get("id") or call["id"]
                call["name"] = delta["function"].get("name") or call["name"]
                call["arguments"] += delta["function"].get("arguments") or ""
    return calls


# -- request translation --------------------------------------------------------------------


def test_system_and_developer_messages_become_the_top_level_system():
    request = translated(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "No jokes."}]},
            user("Hi"),
        ]
    )
    assert request["system"] == [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "No jokes."}]
    assert request["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    assert translated([{"role": "system", "content": "Be brief."}, user("Hi")])["system"] == "Be brief."


def test_tool_calls_and_results_become_tool_use_and_one_user_turn_of_tool_results():
    request = translated(
        [
            user("Weather in Paris and Rome?"),
            user("Quickly."),
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
                    },
                    {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": ""}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "21C"}]},
            user("Thanks, and tomorrow?"),
        ],
        tools=[WEATHER_TOOL],
    )
    first, assistant, results = request["messages"]
    assert first == {
        "role": "user",
        "content": [{"type": "text", "text": "Weather in Paris and Rome?"}, {"type": "text", "text": "Quickly."}],
    }
    assert assistant["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"location": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}},
    ]
    assert results["role"] == "user"
    assert results["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
        {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "21C"}]},
        {"type": "text", "text": "Thanks, and tomorrow?"},
    ]
    assert request["tools"] == [
        {
            "name": "get_weather",
            "description": "The weather now in a city.",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
        }
    ]


def test_image_parts_become_url_and_base64_image_blocks():
    request = translated(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare these."},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
                    {"type": "image_url", "image_url": {"url": PNG_DATA_URL}},
                ],
            }
        ]
    )
    _, by_url, inline = request["messages"][0]["content"]
    assert by_url == {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
    assert inline == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PNG_DATA_URL.split(",", 1)[1]},
    }


@pytest.mark.parametrize(
    ("tool_choice", "parallel", "expected"),
    [
        ("auto", None, None),
        ("auto", False, {"type": "auto", "disable_parallel_tool_use": True}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", None, {"type": "any"}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        ("none", None, {"type": "none"}),
        ({"type": "function", "function": {"name": "get_weather"}}, None, {"type": "tool", "name": "get_weather"}),
    ],
)
def test_tool_choice_translates(tool_choice, parallel, expected):
    fields = {"tools": [WEATHER_TOOL], "tool_choice": tool_choice, "parallel_tool_calls": parallel}
    assert translated([user("Weather?")], **fields).get("tool_choice") == expected


def test_sampling_stop_user_and_max_tokens_translate():
    request = translated(
        [user("Hi")], temperature=0.2, top_p=0.9, stop="END", user="user-42", max_tokens=100, max_completion_tokens=50
    )
    assert request["temperature"] == 0.2
    assert request["top_p"] == 0.9
    assert request["stop_sequences"] == ["END"]
    assert request["metadata"] == {"user_id": "user-42"}
    assert request["max_tokens"] == 50  # max_completion_tokens supersedes max_tokens
    assert translated([user("Hi")], stop=["a", "b"])["stop_sequences"] == ["a", "b"]
    assert translated([user("Hi")])["max_tokens"] == DEFAULT_MAX_TOKENS
    body = {"model": MODEL, "messages": [user("Hi")]}
    assert to_messages_request(body, MODEL, default_max_tokens=777)["max_tokens"] == 777


def test_no_op_defaults_of_missing_features_are_accepted_and_not_sent():
    request = translated(
        [user("Hi")], n=1, logprobs=False, presence_penalty=0, frequency_penalty=0, logit_bias={}, seed=None
    )
    assert set(request) == {"model", "messages", "max_tokens"}


def test_json_schema_response_format_becomes_output_config():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": False}
    response_format = {"type": "json_schema", "json_schema": {"name": "thing", "schema": schema, "strict": True}}
    request = translated([user("Hi")], response_format=response_format)
    assert request["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "output_config" not in translated([user("Hi")], response_format={"type": "text"})


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"frequency_penalty": -1}, "frequency_penalty"),
        ({"seed": 7}, "seed"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"temperature": 1.5}, "temperature"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"reasoning_effort": "high"}, "reasoning_effort"),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
            "messages[0].content[0]",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
        ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0].role"),
    ],
)
def test_features_anthropic_cannot_honour_are_refused_naming_the_parameter(fields, param):
    body = {"model": MODEL, "messages": [user("Hi")], **fields}
    with pytest.raises(ClientError) as caught:
        to_messages_request(body, MODEL)
    assert caught.value.param == param
    assert "anthropic" in caught.value.message
    assert caught.value.status_code == 400


def test_newer_api_version_has_no_sampling_parameters():
    body = {"model": MODEL, "messages": [user("Hi")], "temperature": 0.5}
    with pytest.raises(ClientError) as caught:
        to_messages_request(body, MODEL, api_version="2026-10-21")
    assert caught.value.param == "temperature"
    request = to_messages_request({"model": MODEL, "messages": [user("Hi")]}, MODEL, api_version="2026-10-21")
    assert validate_request(request, "2026-10-21") == []
    assert validate_request({**request, "temperature": 0.5}, "2026-10-21") == [
        "temperature: Extra inputs are not permitted"
    ]


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda r: r.update(stop=["x"]), "stop: Extra inputs are not permitted"),
        (lambda r: r["messages"][0]["content"][0].update(kind="text"), "messages.0.content.0.kind: Extra inputs"),
        (lambda r: r["messages"][0]["content"][1]["source"].update(uri="x"), "messages.0.content.1.source.uri: Extra"),
        (lambda r: r["tools"][0].update(parameters={}), "tools.0.parameters: Extra inputs are not permitted"),
        (lambda r: r["tool_choice"].update(parallel=False), "tool_choice.parallel: Extra inputs are not permitted"),
        (lambda r: r.pop("max_tokens"), "max_tokens: Field required"),
        (lambda r: r["messages"][0]["content"][0].update(text=""), "text content blocks must be non-empty"),
        (lambda r: r.update(temperature=1.5), "temperature: Input should be between 0.0 and 1.0"),
        (
            lambda r: r["messages"].append(
                {"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "x"}]}
            ),
            "messages.1: unexpected `tool_use_id`",
        ),
    ],
)
def test_the_fake_refuses_misnamed_or_misplaced_fields(mutate, problem):
    request = translated(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Hi"},
                    {"type": "image_url", "image_url": {"url": "https://e.com/a.png"}},
                ],
            }
        ],
        tools=[WEATHER_TOOL],
        tool_choice="required",
    )
    mutate(request)
    assert any(p.startswith(problem) or problem in p for p in validate_request(request)), validate_request(request)


# -- response translation -------------------------------------------------------------------


def test_recorded_message_becomes_a_chat_completion():
    recorded = json.loads(fixture("message_00.json"))
    body, usage = from_message(recorded, created=1700000000)
    completion = ChatCompletion.model_validate(body)
    assert completion.id == "msg_01MkoP42QB7TUf5m2NVVK2kE"
    assert completion.model == "claude-sonnet-4-5-20250929"
    assert completion.choices[0].message.content == recorded["content"][0]["text"]
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (249, 26)
    assert usage == Usage(input_tokens=249, output_tokens=26, cached_tokens=0)


def test_tool_use_blocks_become_tool_calls():
    answer = Answer(
        MODEL,
        [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}},
        ],
        "tool_use",
        None,
        {"input_tokens": 10, "output_tokens": 20},
    )
    message = message_body(answer, "msg_1")
    Message.model_validate(message)
    body, _ = from_message(message, created=1)
    choice = ChatCompletion.model_validate(body).choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Checking."
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert (call.id, call.type, call.function.name) == ("toolu_1", "function", "get_weather")
    assert json.loads(call.function.arguments) == {"location": "Paris"}


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
def test_stop_reason_becomes_finish_reason(stop_reason, finish_reason):
    message = {**json.loads(fixture("message_00.json")), "stop_reason": stop_reason}
    assert from_message(message, 1)[0]["choices"][0]["finish_reason"] == finish_reason


def test_cache_reads_and_writes_are_prompt_tokens_and_reads_are_cached():
    openai_usage, usage = usage_to_openai(
        {"input_tokens": 10, "cache_read_input_tokens": 1200, "cache_creation_input_tokens": 300, "output_tokens": 5}
    )
    assert openai_usage["prompt_tokens"] == 1510
    assert openai_usage["total_tokens"] == 1515
    assert openai_usage["prompt_tokens_details"] == {"cached_tokens": 1200, "cache_write_tokens": 300}
    assert usage == Usage(input_tokens=1510, output_tokens=5, cached_tokens=1200)


@pytest.mark.parametrize(
    ("reported", "expected"),
    [
        ({"input_tokens": -5, "output_tokens": 7}, Usage(-5, 7, 0)),
        ({"output_tokens": 7}, Usage(0, 7, 0)),
        ({"input_tokens": "many", "output_tokens": None, "cache_read_input_tokens": True}, Usage(0, 0, 0)),
        ({}, Usage(0, 0, 0)),
    ],
)
def test_odd_usage_numbers_pass_through_and_never_crash(reported, expected):
    assert usage_to_openai(reported)[1] == expected


# -- streaming translation ------------------------------------------------------------------


def test_recorded_text_stream_translates_event_by_event():
    chunks, translator = translate_stream(recorded_events("basic_response.sse"))
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:4]] == ["Hello", " there", "!"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == 11
    assert chunks[-1]["usage"]["completion_tokens"] == 6
    assert {c["id"] for c in chunks} == {"msg_4QpJur2dWWDjF6C758FbBw5vm12BaVipnK"}
    assert {c["model"] for c in chunks} == {"claude-3-opus-latest"}
    assert translator.stopped


def test_recorded_tool_stream_becomes_tool_call_deltas():
    chunks, _ = translate_stream(recorded_events("tool_use_response.sse"))
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "I'll check the current weather in Paris for you."
    assert merged_tool_calls(chunks) == {
        0: {"id": "toolu_01NRLabsLyVHZPKxbKvkfSMn", "name": "get_weather", "arguments": '{"location": "Paris"}'}
    }
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert (chunks[-1]["usage"]["prompt_tokens"], chunks[-1]["usage"]["completion_tokens"]) == (377, 65)


def test_usage_in_message_delta_is_cumulative_and_wins():
    chunks, translator = translate_stream(recorded_events("recorded_stream_02.sse"))
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "[12345,67890]"
    assert translator.final_usage() == Usage(135, 10, 0)


def test_a_stream_without_message_stop_is_not_finished():
    events = [e for e in recorded_events("basic_response.sse") if e.event != "message_stop"]
    _, translator = translate_stream(events)
    assert not translator.stopped


def test_an_error_event_is_a_stream_cut_with_the_upstream_type():
    translator = StreamTranslator(created=1, model=MODEL)
    translator.feed("message_start", json.dumps({"type": "message_start", "message": {"id": "m", "usage": {}}}))
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    with pytest.raises(StreamCut) as caught:
        translator.feed("error", json.dumps(error))
    assert (caught.value.status, caught.value.error_type, caught.value.message) == (
        529,
        "overloaded_error",
        "Overloaded",
    )


def test_the_fake_speaks_the_sdk_response_types():
    answer = Answer(
        MODEL,
        [{"type": "text", "text": "Hi there"}, {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}],
        "tool_use",
        None,
        {"input_tokens": 3, "output_tokens": 4},
    )
    Message.model_validate(message_body(answer, "msg_1"))
    adapter: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
    for _, data in stream_events(answer, "msg_1"):
        if data["type"] != "ping":
            adapter.validate_python(data)


# -- the provider against an upstream ---------------------------------------------------------


def target(base_url: str, **options: Any) -> RouteTarget:
    return RouteTarget("rt-1", "anthropic", base_url, MODEL, CANARY, options)


def streamed(status: int, content: bytes) -> Callable[[Seen], Scripted]:
    """A scripted upstream answer: ``status`` and ``content``, whatever was asked."""
    return lambda request: Scripted(status, body_of(content))


def test_messages_url_is_built_from_the_route_base_url():
    assert messages_url("https://api.anthropic.com") == "https://api.anthropic.com/v1/messages"
    assert messages_url("https://proxy.example/anthropic/v1/") == "https://proxy.example/anthropic/v1/messages"


def test_stream_chunks_are_yielded_before_the_upstream_finishes():
    raw = fixture("basic_response.sse").encode()
    head, tail = raw.split(b'"text":" there"', 1)

    release = threading.Event()

    async def upstream_body() -> AsyncIterator[bytes]:
        yield head.rsplit(b"event:", 1)[0]
        while not release.is_set():  # the upstream's loop is another thread's
            await asyncio.sleep(0.005)
        yield b"event:" + head.rsplit(b"event:", 1)[1] + b'"text":" there"' + tail

    def handler(request: Seen) -> Scripted:
        assert request.headers["x-api-key"] == CANARY
        return Scripted(200, upstream_body, {"content-type": "text/event-stream"})

    async def run(base_url: str) -> None:
        http = UpstreamHTTP()
        stream = AnthropicProvider(http).stream_chat(target(base_url), {"messages": [user("Hi")]})
        first = await anext(stream)
        second = await anext(stream)
        assert isinstance(first, dict) and isinstance(second, dict)  # no PAUSE unless asked for
        assert first["choices"][0]["delta"]["role"] == "assistant"
        assert second["choices"][0]["delta"]["content"] == "Hello"
        release.set()  # only now does the rest of the answer exist upstream
        rest = [chunk async for chunk in stream if isinstance(chunk, dict)]
        assert rest[-1]["usage"]["completion_tokens"] == 6
        await http.aclose()

    with scripted_upstream(handler) as (base_url, _):
        asyncio.run(run(base_url))


def test_embeddings_are_refused_before_any_network_call():
    with scripted_upstream(streamed(200, b"{}")) as (base_url, seen):
        provider = AnthropicProvider(UpstreamHTTP())
        with pytest.raises(ClientError) as caught:
            asyncio.run(provider.embed(target(base_url), {"input": "hi"}))
    assert seen == []
    assert caught.value.param == "model"
    assert "anthropic" in caught.value.message


def test_a_200_error_body_and_a_non_json_error_are_still_attributed():
    overloaded = json.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "Busy"}}).encode()
    answers = [(200, overloaded), (502, f"<html>bad gateway for {CANARY}</html>".encode())]
    for answer, (status, error_type) in zip(answers, ((529, "overloaded_error"), (502, "upstream_error")), strict=True):
        with scripted_upstream(streamed(*answer)) as (base_url, _), pytest.raises(ProviderError) as caught:
            asyncio.run(AnthropicProvider(UpstreamHTTP()).chat(target(base_url), {"messages": [user("Hi")]}))
        assert (caught.value.status, caught.value.error_type) == (status, error_type)
        assert CANARY not in caught.value.message


# -- the whole gateway, with the openai SDK as the client ---------------------------------------


@dataclass
class Stack:
    services: Services
    fake: FakeAnthropic
    upstream_url: str
    v1: str
    key: str
    prices: Prices

    def sdk(self) -> OpenAI:
        return OpenAI(base_url=self.v1, api_key=self.key, max_retries=0)

    def receipt(self, request_id: str) -> dict[str, Any]:
        response = httpx.get(f"{self.v1}/receipts/{request_id}", headers={"authorization": f"Bearer {self.key}"})
        assert response.status_code == 200
        found: dict[str, Any] = response.json()
        return found

    def raw_stream(self, **body: Any) -> tuple[list[str], str]:
        """The ``data:`` lines of a streamed answer, and its request id."""
        response = httpx.post(
            f"{self.v1}/chat/completions",
            headers={"authorization": f"Bearer {self.key}"},
            json={"model": MODEL, "stream": True, **body},
            timeout=20,
        )
        assert response.status_code == 200
        lines = [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]
        return lines, response.headers["x-request-id"]


def _seed(services: Services, upstream_url: str) -> tuple[str, Prices]:
    now = services.clock()
    with services.db.write() as conn:
        org = create_org(conn, "anthropic-users", now)
        top_up(conn, org.id, "routed", 50_000_000, now)
        prices = get_model(conn, MODEL).official_prices
        routes = {
            MODEL: (upstream_url, {}),
            SLOW_MODEL: (upstream_url, {"timeout_first_byte_ms": 150, "timeout_connect_ms": 100}),
            DOWN_MODEL: (f"http://127.0.0.1:{free_port()}", {"timeout_connect_ms": 2000}),
            EMBEDDING_MODEL: (upstream_url, {}),
        }
        for model, (base_url, options) in routes.items():
            # These tests provoke failures on purpose; the breakers are tested elsewhere.
            route = upstream_route(
                conn, model, "anthropic", base_url, credential=CANARY, options=options, forced_circuit="closed"
            )
            create_route(conn, route, now)
        _, key = create_key(
            conn,
            pepper=services.pepper,
            org_id=org.id,
            name="anthropic tester",
            policy=KeyPolicy(settlement="routed", lower_cost_routes=True),
            now=now,
        )
    return key, prices


@pytest.fixture(scope="module")
def module_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    fake = FakeAnthropic(api_key=CANARY)
    providers: dict[str, Provider] = {"anthropic": AnthropicProvider(UpstreamHTTP()), "simulated": SimulatedProvider()}
    services = build_services(make_settings(tmp_path_factory.mktemp("anthropic")), providers=providers)
    with ServerThread(fake.app) as upstream:
        key, prices = _seed(services, upstream.base_url)
        with ServerThread(build_app(services)) as gateway:
            yield Stack(services, fake, upstream.base_url, f"{gateway.base_url}/v1", key, prices)
        fake.closing.set()  # let a slow answer still sleeping give up, so the fake stops at once
    services.db.dispose()


@pytest.fixture
def stack(module_stack: Stack) -> Iterator[Stack]:
    module_stack.fake.reset()
    yield module_stack
    with module_stack.services.db.read() as conn:
        report = audit(conn)
    report.raise_if_broken()
    assert report.receipt_charges_micros == report.posted_charges_micros


def error_of(exc: openai.APIStatusError) -> dict[str, Any]:
    assert isinstance(exc.body, dict)
    return exc.body


def test_plain_chat_is_translated_served_and_billed(stack: Stack):
    raw = stack.sdk().chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}],
        user="user-42",
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == DEFAULT_REPLY
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == MODEL
    (received,) = stack.fake.received
    assert received.url == f"{stack.upstream_url}/v1/messages"
    assert received.headers["x-api-key"] == CANARY
    assert received.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in received.headers
    assert received.body["system"] == "Be brief."
    assert received.body["max_tokens"] == DEFAULT_MAX_TOKENS
    assert received.body["metadata"] == {"user_id": "user-42"}
    reported = stack.fake.answers[0].usage
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == reported["input_tokens"]
    assert completion.usage.completion_tokens == reported["output_tokens"]
    receipt = stack.receipt(raw.headers["x-request-id"])
    assert receipt["status"] == "succeeded"
    assert receipt["provider"] == "anthropic"
    assert (receipt["input_tokens"], receipt["output_tokens"]) == (reported["input_tokens"], reported["output_tokens"])
    assert receipt["usage_source"] == "provider_reported"
    expected = charge_for(Usage(reported["input_tokens"], reported["output_tokens"]), stack.prices)
    assert receipt["charge_micros"] == int(raw.headers["x-glasskey-charge-micros"]) == expected > 0


def test_streaming_with_usage_reports_the_upstream_usage_and_bills_it(stack: Stack):
    raw = stack.sdk().chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say hello #fake:cache"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == DEFAULT_REPLY
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 5  # word by word
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    reported = stack.fake.answers[0].usage
    cache_read, cache_write = reported["cache_read_input_tokens"], reported["cache_creation_input_tokens"]
    assert cache_read > 0 and cache_write > 0
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    assert usage.prompt_tokens == reported["input_tokens"] + cache_read + cache_write
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == cache_read
    assert usage.prompt_tokens_details.cache_write_tokens == cache_write  # a field of the openai SDK too
    assert usage.completion_tokens == reported["output_tokens"]
    assert stack.fake.received[0].body["stream"] is True
    receipt = stack.receipt(raw.headers["x-request-id"])
    assert (receipt["input_tokens"], receipt["cached_tokens"]) == (usage.prompt_tokens, cache_read)
    assert receipt["output_tokens"] == usage.completion_tokens
    expected = charge_for(Usage(usage.prompt_tokens, usage.completion_tokens, cache_read), stack.prices)
    assert receipt["charge_micros"] == expected > 0
    assert receipt["ttft_ms"] is not None


def test_stream_without_include_usage_still_bills_reported_usage(stack: Stack):
    raw = stack.sdk().chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    chunks = list(raw.parse())
    assert all(c.usage is None and c.choices for c in chunks)
    receipt = stack.receipt(raw.headers["x-request-id"])
    assert receipt["usage_source"] == "provider_reported"
    assert receipt["output_tokens"] == stack.fake.answers[0].usage["output_tokens"]


def test_tool_calling_round_trip(stack: Stack):
    sdk = stack.sdk()
    messages: list[Any] = [{"role": "user", "content": "What's the weather in Paris?"}]
    first = sdk.chat.completions.create(
        model=MODEL, messages=messages, tools=[WEATHER_TOOL], tool_choice="required", parallel_tool_calls=False
    )
    sent = stack.fake.received[0].body
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert sent["tools"][0]["input_schema"] == WEATHER_TOOL["function"]["parameters"]
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris"}

    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"},
    ]
    second = sdk.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])
    assert second.choices[0].message.content == "The tool answered: 18C and sunny"
    assert second.choices[0].finish_reason == "stop"
    assistant, result = stack.fake.received[1].body["messages"][1:]
    assert assistant["content"][-1] == {
        "type": "tool_use",
        "id": call.id,
        "name": "get_weather",
        "input": {"location": "Paris"},
    }
    assert result == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18C and sunny"}],
    }


def test_streamed_tool_call_arguments_arrive_in_pieces(stack: Stack):
    chunks = list(
        stack.sdk().chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Weather in Paris?"}],
            tools=[WEATHER_TOOL],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            stream=True,
        )
    )
    assert stack.fake.received[0].body["tool_choice"] == {"type": "tool", "name": "get_weather"}
    calls = merged_tool_calls([c.model_dump() for c in chunks if c.choices])
    assert calls[0]["name"] == "get_weather"
    assert calls[0]["id"].startswith("toolu_")
    assert json.loads(calls[0]["arguments"]) == {"location": "Paris"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_recorded_answers_replayed_by_the_upstream_reach_the_client_intact(stack: Stack):
    sdk = stack.sdk()
    whole = sdk.chat.completions.create(model=MODEL, messages=[user("#fake:replay=message_00.json")])
    recorded = json.loads(fixture("message_00.json"))
    assert whole.choices[0].message.content == recorded["content"][0]["text"]
    assert whole.usage is not None
    assert (whole.usage.prompt_tokens, whole.usage.completion_tokens) == (249, 26)
    chunks = list(
        sdk.chat.completions.create(
            model=MODEL,
            messages=[user("#fake:replay=tool_use_response.sse")],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert {c.model for c in chunks} == {"claude-sonnet-4-20250514"}
    assert merged_tool_calls([c.model_dump() for c in chunks if c.choices])[0] == {
        "id": "toolu_01NRLabsLyVHZPKxbKvkfSMn",
        "name": "get_weather",
        "arguments": '{"location": "Paris"}',
    }
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (377, 65)


def test_image_parts_reach_anthropic_as_image_blocks(stack: Stack):
    completion = stack.sdk().chat.completions.create(
        model=MODEL,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What are these?"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                    {"type": "image_url", "image_url": {"url": PNG_DATA_URL}},
                ],
            }
        ],
    )
    assert (completion.choices[0].message.content or "").startswith("I see 2 images (url, image/png).")
    blocks = stack.fake.received[0].body["messages"][0]["content"]
    assert [b["source"]["type"] for b in blocks[1:]] == ["url", "base64"]


def test_stop_and_max_tokens_are_honoured(stack: Stack):
    sdk = stack.sdk()
    stopped = sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], stop=["upstream"])
    assert stopped.choices[0].message.content == "Hello there! I am the fake Anthropic "
    assert stopped.choices[0].finish_reason == "stop"
    assert stack.fake.received[0].body["stop_sequences"] == ["upstream"]
    capped = sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=3)
    assert capped.choices[0].message.content == "Hello there! I"
    assert capped.choices[0].finish_reason == "length"
    assert capped.usage is not None and capped.usage.completion_tokens == 3
    assert stack.fake.received[1].body["max_tokens"] == 3


def test_json_schema_response_format_is_honoured(stack: Stack):
    schema = {"type": "object", "properties": {"product_name": {"type": "string"}}, "additionalProperties": False}
    completion = stack.sdk().chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Extract the product."}],
        response_format={"type": "json_schema", "json_schema": {"name": "product", "schema": schema}},
    )
    assert json.loads(completion.choices[0].message.content or "")["product_name"] == "Green Tea"
    assert stack.fake.received[0].body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"temperature": 1.5}, "temperature"),
    ],
)
def test_features_anthropic_cannot_honour_are_a_client_error_before_any_call(stack: Stack, fields, param):
    with pytest.raises(openai.BadRequestError) as caught:
        stack.sdk().chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], **fields)
    error = error_of(caught.value)
    assert (error["source"], error["param"]) == ("client", param)
    assert "anthropic" in error["message"]
    assert stack.fake.received == []
    receipt = stack.receipt(caught.value.response.headers["x-request-id"])
    assert (receipt["status"], receipt["charge_micros"]) == ("failed", 0)


def test_a_best_effort_seed_is_dropped_said_in_a_header_and_listed_on_the_receipt(stack: Stack):
    # The OpenAI spec makes `seed` best effort: ordinary clients send it, and a route to a provider
    # without it must not break them (issue 14). What was dropped is said, never silent.
    raw = stack.sdk().chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], seed=7
    )
    assert raw.headers["x-glasskey-dropped-params"] == "seed"
    assert "seed" not in stack.fake.received[0].body
    receipt = stack.receipt(raw.headers["x-request-id"])
    assert (receipt["status"], receipt["dropped_params"]) == ("succeeded", ["seed"])


def test_strict_params_on_the_route_refuses_a_best_effort_seed_before_any_call(stack: Stack):
    with stack.services.db.write() as conn:
        update_route(conn, f"rt-{MODEL}", options={"strict_params": True})
    stack.services.cache.clear()
    try:
        with pytest.raises(openai.BadRequestError) as caught:
            stack.sdk().chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], seed=7)
        error = error_of(caught.value)
        assert (error["source"], error["param"]) == ("client", "seed")
        assert stack.fake.received == []
    finally:
        with stack.services.db.write() as conn:
            update_route(conn, f"rt-{MODEL}", options={})
        stack.services.cache.clear()


def test_strict_params_on_the_key_refuses_a_best_effort_seed_and_without_it_the_seed_is_dropped(stack: Stack):
    # The route is not strict: the key alone asks for today's 400 (issue 14: "a key or route option").
    services = stack.services
    with services.db.write() as conn:
        record, strict_key = create_key(
            conn,
            pepper=services.pepper,
            org_id=get_key(conn, stack.key.rsplit("-", 1)[0]).org_id,
            name="strict tester",
            policy=KeyPolicy(settlement="routed", strict_params=True),
            now=services.clock(),
        )
    sdk = OpenAI(base_url=stack.v1, api_key=strict_key, max_retries=0)
    told = httpx.get(f"{stack.v1}/key", headers={"authorization": f"Bearer {strict_key}"}).json()
    assert told["strict_params"] is True and "is refused with a 400" in told["strict_params_in_words"]
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], seed=7)
    error = error_of(caught.value)
    assert (error["source"], error["param"]) == ("client", "seed")
    assert "strict_params" in error["message"]
    assert stack.fake.received == []

    with services.db.write() as conn:
        update_key(conn, record.id, strict_params=False)
    services.cache.clear()
    raw = sdk.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], seed=7
    )
    assert raw.headers["x-glasskey-dropped-params"] == "seed"
    assert "seed" not in stack.fake.received[0].body
    receipt = httpx.get(
        f"{stack.v1}/receipts/{raw.headers['x-request-id']}", headers={"authorization": f"Bearer {strict_key}"}
    ).json()
    assert (receipt["status"], receipt["dropped_params"]) == ("succeeded", ["seed"])


def test_embeddings_are_refused_naming_the_provider(stack: Stack):
    with pytest.raises(openai.BadRequestError) as caught:
        stack.sdk().embeddings.create(model=EMBEDDING_MODEL, input="hello")
    error = error_of(caught.value)
    assert (error["source"], error["param"]) == ("client", "model")
    assert "anthropic" in error["message"]
    assert stack.fake.received == []


UPSTREAM_ERRORS = [
    (400, 400, openai.BadRequestError),
    (401, 502, openai.InternalServerError),
    (403, 502, openai.InternalServerError),
    (404, 502, openai.InternalServerError),
    (408, 502, openai.InternalServerError),
    (409, 502, openai.InternalServerError),
    (413, 413, openai.APIStatusError),
    (429, 429, openai.RateLimitError),
    (500, 502, openai.InternalServerError),
    (502, 502, openai.InternalServerError),
    (503, 502, openai.InternalServerError),
    (504, 502, openai.InternalServerError),
    (529, 503, openai.InternalServerError),
]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize(("upstream_status", "status", "exception"), UPSTREAM_ERRORS)
def test_upstream_errors_are_attributed_to_anthropic(stack: Stack, upstream_status, status, exception, stream):
    with pytest.raises(exception) as caught:
        stack.sdk().chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": f"hi #fake:status={upstream_status}"}], stream=stream
        )
    assert type(caught.value) is exception  # e.g. an upstream 401 is never the client's AuthenticationError
    assert caught.value.status_code == status
    error = error_of(caught.value)
    assert (error["source"], error["provider"]) == ("upstream", "anthropic")
    assert (error["upstream_status"], error["upstream_type"]) == (upstream_status, ERROR_TYPES[upstream_status])
    assert f"fake upstream error {upstream_status}" in error["message"]
    if upstream_status == 429:
        assert caught.value.response.headers["retry-after"] == DEFAULT_RETRY_AFTER
    receipt = stack.receipt(caught.value.response.headers["x-request-id"])
    assert (receipt["status"], receipt["error_source"], receipt["charge_micros"]) == ("failed", "upstream", 0)
    assert receipt["attempts"][0]["http_status"] == upstream_status


def test_an_upstream_that_does_not_answer_in_time_is_a_504(stack: Stack):
    with pytest.raises(openai.InternalServerError) as caught:
        stack.sdk().chat.completions.create(
            model=SLOW_MODEL, messages=[{"role": "user", "content": "hi #fake:slow=3000"}]
        )
    assert caught.value.status_code == 504
    error = error_of(caught.value)
    assert (error["source"], error["provider"], error["upstream_type"]) == ("upstream", "anthropic", "timeout")


def test_an_unreachable_upstream_is_a_502_network_error(stack: Stack):
    with pytest.raises(openai.InternalServerError) as caught:
        stack.sdk().chat.completions.create(model=DOWN_MODEL, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 502
    error = error_of(caught.value)
    assert (error["source"], error["provider"], error["upstream_type"]) == ("upstream", "anthropic", "network_error")


@pytest.mark.parametrize(
    ("directive", "upstream_type"),
    [("cut=3", "stream_cut"), ("stream_error=overloaded_error", "overloaded_error"), ("drop=3", "network_error")],
)
def test_a_stream_broken_mid_answer_ends_in_an_error_event_and_bills_what_was_sent(
    stack: Stack, directive, upstream_type
):
    lines, request_id = stack.raw_stream(messages=[{"role": "user", "content": f"Tell me #fake:{directive}"}])
    assert "[DONE]" not in lines
    error = json.loads(lines[-1])["error"]
    assert (error["source"], error["provider"], error["upstream_type"]) == ("upstream", "anthropic", upstream_type)
    text = "".join(
        choice["delta"].get("content") or "" for line in lines[:-1] for choice in json.loads(line)["choices"]
    )
    assert text and DEFAULT_REPLY.startswith(text)
    receipt = stack.receipt(request_id)
    assert receipt["status"] == "failed"
    assert receipt["usage_source"] == "estimated"
    assert 0 < receipt["charge_micros"] < receipt["hold_micros"]


def test_the_upstream_credential_never_leaks(stack: Stack, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    sdk = stack.sdk()
    seen: list[str] = []
    prompts = [f"#fake:status={status}" for status, _, _ in UPSTREAM_ERRORS] + ["#fake:echo_key", "hello"]
    for prompt in prompts:
        for stream in (False, True):
            try:
                response = sdk.chat.completions.with_raw_response.create(
                    model=MODEL, messages=[{"role": "user", "content": prompt}], stream=stream
                )
                seen.append(response.http_response.read().decode())
            except openai.APIStatusError as error:
                seen.append(error.response.text)
    for model in (SLOW_MODEL, DOWN_MODEL):
        with pytest.raises(openai.InternalServerError) as caught:
            sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi #fake:slow=2000"}])
        seen.append(caught.value.response.text)
    for directive in ("cut=2", "stream_error=api_error", "drop=2"):
        seen.append("\n".join(stack.raw_stream(messages=[{"role": "user", "content": f"x #fake:{directive}"}])[0]))
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.embeddings.create(model=EMBEDDING_MODEL, input="hi")
    seen.append(refused.value.response.text)

    assert any("[credential]" in text for text in seen)  # the echoed key was scrubbed, not lost
    dump: list[str] = []
    with stack.services.db.read() as conn:
        metadata = MetaData()
        metadata.reflect(conn)
        for table in metadata.sorted_tables:
            if table.name != "routes":  # the route is where the operator stored it
                dump += [repr(tuple(row)) for row in conn.execute(select(table))]
    logs = [record.getMessage() + (record.exc_text or "") for record in caplog.records]
    secret_part = CANARY.removeprefix("sk-ant-canary-")
    for place in (seen, dump, logs, [received.url for received in stack.fake.received]):
        assert not [text for text in place if secret_part in text or CANARY in text]
    assert len(stack.fake.received) > 30
