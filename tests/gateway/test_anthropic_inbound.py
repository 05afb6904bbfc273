"""The Anthropic inbound translation, table by table, without a server.

Outputs are checked against the ``anthropic`` SDK's own response types, and the stream translator
against the recorded Anthropic streams of ``fixtures/anthropic``: each is turned into OpenAI chunks
by the provider's translator (``providers.anthropic_translate``) and back by ours, and must come
back as the same events, text and tool input.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from fake_anthropic import fixture
from glasskey.errors import (
    APIKeyError,
    BudgetError,
    ClientError,
    GlasskeyError,
    ModelError,
    RouteError,
    UpstreamError,
    WalletError,
)
from glasskey.gateway import anthropic_api, gemini_api
from glasskey.gateway.anthropic_inbound import check_version, to_chat_body
from glasskey.gateway.anthropic_inbound_reply import error_body, error_headers, stop_reason, to_message
from glasskey.gateway.anthropic_inbound_stream import MessageStream
from glasskey.gateway.inbound_thinking import ANTHROPIC_ENDPOINT, GEMINI_ENDPOINT, for_route
from glasskey.gateway.outcomes import SSE_DONE, sse
from glasskey.providers.anthropic_translate import StreamTranslator, from_message
from glasskey.providers.sse import SSEParser

EVENTS: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)


def request(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}], **fields}


# -- request --------------------------------------------------------------------------------


def test_a_plain_request_becomes_a_chat_body():
    assert to_chat_body(request(system="Be brief.", temperature=0.2, stop_sequences=["END"])) == {
        "model": "m",
        "max_tokens": 64,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        "temperature": 0.2,
        "stop": ["END"],
    }


def test_a_system_message_inside_messages_stays_a_system_message():
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "system", "content": [{"type": "text", "text": "Now shorter."}]},
    ]
    assert to_chat_body(request(messages=messages))["messages"][1] == {"role": "system", "content": "Now shorter."}


def test_a_stream_asks_for_usage_in_the_last_chunk():
    body = to_chat_body(request(stream=True))
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_system_blocks_and_cache_control_keep_the_text_and_drop_the_caching():
    body = to_chat_body(
        request(
            system=[
                {"type": "text", "text": "A", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "B"},
            ],
            cache_control={"type": "ephemeral"},
        )
    )
    assert body["messages"][0] == {
        "role": "system",
        "content": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}],
    }
    assert "cache_control" not in orjson.dumps(body).decode()


def test_tool_use_and_results_become_tool_calls_and_tool_messages_in_order():
    messages = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "text", "text": "Calling."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [{"type": "text", "text": "21"}],
                    "is_error": False,
                },
                {"type": "text", "text": "And tomorrow?"},
            ],
        },
    ]
    tools = [{"name": "get_weather", "description": "d", "input_schema": {"type": "object"}}]
    body = to_chat_body(
        request(messages=messages, tools=tools, tool_choice={"type": "any", "disable_parallel_tool_use": True})
    )
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": "Calling.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "21"},
        {"role": "user", "content": "And tomorrow?"},
    ]
    assert body["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}, "description": "d"}}
    ]
    assert body["tool_choice"] == "required" and body["parallel_tool_calls"] is False


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "none"}, {"tool_choice": "none"}),
        ({"type": "tool", "name": "f"}, {"tool_choice": {"type": "function", "function": {"name": "f"}}}),
    ],
)
def test_tool_choice_translates(choice, expected):
    tools = [{"name": "f", "input_schema": {"type": "object"}}]
    body = to_chat_body(request(tools=tools, tool_choice=choice))
    assert {name: body[name] for name in expected} == expected


def test_images_and_documents_become_openai_parts():
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain"}},
        {"type": "text", "text": "Describe."},
    ]
    parts = to_chat_body(request(messages=[{"role": "user", "content": content}]))["messages"][0]["content"]
    assert parts == [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {"type": "file", "file": {"filename": "document.pdf", "file_data": "data:application/pdf;base64,JVBE"}},
        {"type": "text", "text": "plain"},
        {"type": "text", "text": "Describe."},
    ]


THINKING = "extra_body"  # where the translation puts thinking: Google's thinking_config extension
SCHEMA_FORMAT: Any = {"format": {"type": "json_schema", "schema": {"type": "object"}}}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"thinking": {"type": "enabled", "budget_tokens": 32000}},
            {THINKING: {"google": {"thinking_config": {"thinking_budget": 32000, "include_thoughts": True}}}},
        ),
        (
            {"thinking": {"type": "adaptive"}, "output_config": {"effort": "max"}},
            {
                THINKING: {"google": {"thinking_config": {"thinking_budget": -1, "include_thoughts": True}}},
                "reasoning_effort": "high",
            },
        ),
        ({"thinking": {"type": "disabled"}}, {THINKING: {"google": {"thinking_config": {"thinking_budget": 0}}}}),
        (
            {"output_config": SCHEMA_FORMAT},
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "output", "schema": {"type": "object"}},
                }
            },
        ),
    ],
)
def test_thinking_and_effort_are_translated_as_gemini_takes_them_and_a_json_schema_becomes_response_format(
    fields, expected
):
    body = to_chat_body(request(**fields))
    assert {name: body[name] for name in (THINKING, "reasoning_effort", "response_format") if name in body} == expected


@pytest.mark.parametrize(
    ("provider", "fields", "kept", "left_out"),
    [
        ("gemini", {"thinking": {"type": "enabled", "budget_tokens": 3000}}, {THINKING}, ()),
        (
            "gemini",
            {"thinking": {"type": "disabled"}, "output_config": {"effort": "low"}},
            {THINKING},
            ("output_config.effort",),
        ),
        ("gemini", {"output_config": {"effort": "medium"}}, {"reasoning_effort"}, ()),
        (
            "openai",
            {"thinking": {"type": "adaptive"}, "output_config": {"effort": "low"}},
            set(),
            ("thinking", "output_config.effort"),
        ),
        ("openai_compatible", {"thinking": {"type": "enabled", "budget_tokens": 1024}}, set(), ("thinking",)),
        ("simulated", {"output_config": {"effort": "high"}}, set(), ("output_config.effort",)),
        ("openai", {"output_config": SCHEMA_FORMAT}, set(), ()),
    ],
)
def test_thinking_is_carried_to_gemini_routes_and_named_for_the_others(provider, fields, kept, left_out):
    body, names = for_route(ANTHROPIC_ENDPOINT, provider, to_chat_body(request(**fields)))
    assert {THINKING, "reasoning_effort"} & set(body) == kept
    assert names == left_out


def test_the_openai_endpoints_own_extra_body_and_effort_are_never_touched():
    body = {"model": "m", "extra_body": {"google": {"thinking_config": {}}}, "reasoning_effort": "low"}
    assert for_route("chat.completions", "openai", body) == (body, ())


def test_the_endpoint_names_are_the_apis_own():
    assert (ANTHROPIC_ENDPOINT, GEMINI_ENDPOINT) == (anthropic_api.ENDPOINT, gemini_api.GENERATE_ENDPOINT)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"top_k": 5}, "top_k"),
        ({"mcp_servers": [{"type": "url", "url": "https://x", "name": "x"}]}, "mcp_servers"),
        ({"context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]}}, "context_management.edits[0]"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0]"),
        ({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]},
         "messages[0].content[0].source"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
        ({"tool_choice": {"type": "any"}}, "tool_choice"),
        ({"output_config": {"format": {"type": "xml"}}}, "output_config.format"),
    ],
)  # fmt: skip
def test_what_cannot_be_carried_is_refused_naming_the_parameter(fields, param):
    with pytest.raises(ClientError) as caught:
        to_chat_body(request(**fields))
    assert caught.value.param == param
    assert caught.value.status_code == 400


def test_an_edit_that_only_clears_thinking_is_accepted_and_not_sent():
    edits = {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}
    assert "context_management" not in to_chat_body(request(context_management=edits))


@pytest.mark.parametrize("version", ["2023-06-01", "2026-10-21", None])
def test_any_dated_anthropic_version_is_accepted(version):
    check_version(version)


def test_a_malformed_anthropic_version_is_refused():
    with pytest.raises(ClientError) as caught:
        check_version("latest")
    assert caught.value.param == "anthropic-version"


# -- response -------------------------------------------------------------------------------


def completion(message: dict[str, Any], finish_reason: str = "stop", **usage: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, **usage},
    }


def test_a_completion_becomes_a_message_the_sdk_accepts():
    body = completion(
        {"role": "assistant", "content": "Hello"}, prompt_tokens_details={"cached_tokens": 4, "cache_write_tokens": 2}
    )
    message = Message.model_validate(to_message(body, message_id="msg_req_1", model="claude-x"))
    assert message.content[0].type == "text" and message.content[0].text == "Hello"
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (4, 4)
    assert (message.usage.cache_creation_input_tokens, message.usage.output_tokens) == (2, 5)
    assert (message.id, message.model, message.stop_reason) == ("msg_req_1", "claude-x", "end_turn")


def test_reasoning_and_tool_calls_become_thinking_and_tool_use_blocks():
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    body = completion(
        {"role": "assistant", "content": None, "reasoning_content": "Let me think", "tool_calls": [call]}, "tool_calls"
    )
    message = Message.model_validate(to_message(body, message_id="msg_1", model="m"))
    assert [block.type for block in message.content] == ["thinking", "tool_use"]
    assert message.content[1].input == {"a": 1}  # type: ignore[union-attr]
    assert message.stop_reason == "tool_use"


def test_an_openai_refusal_becomes_text_with_stop_reason_refusal():
    body = completion({"role": "assistant", "content": None, "refusal": "I can't help with that."})
    message = Message.model_validate(to_message(body, message_id="msg_1", model="m"))
    assert message.content[0].text == "I can't help with that."  # type: ignore[union-attr]
    assert message.stop_reason == "refusal"
    chunks = [
        sse({"choices": [{"index": 0, "delta": {"role": "assistant", "refusal": ""}, "finish_reason": None}]}),
        sse({"choices": [{"index": 0, "delta": {"refusal": "I can't"}, "finish_reason": None}]}),
        sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        SSE_DONE,
    ]
    events = translated_events(chunks)
    assert [e["delta"]["text"] for e in events if e["type"] == "content_block_delta"] == ["I can't"]
    assert events[-2]["delta"]["stop_reason"] == "refusal"


@pytest.mark.parametrize("cache", [(0, 0), (120, 30)])
def test_a_recorded_message_comes_back_after_a_round_trip_through_the_openai_shape(cache: tuple[int, int]):
    recorded = orjson.loads(fixture("message_00.json"))
    recorded["usage"].update(cache_read_input_tokens=cache[0], cache_creation_input_tokens=cache[1])
    completion, _ = from_message(recorded, created=0)  # what the anthropic provider hands the lifecycle
    back = Message.model_validate(to_message(completion, message_id=recorded["id"], model=recorded["model"]))
    original = Message.model_validate(recorded)
    assert back.content == original.content
    assert back.stop_reason == original.stop_reason
    for name in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
        assert getattr(back.usage, name) == getattr(original.usage, name)


@pytest.mark.parametrize(
    ("finish_reason", "expected"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_finish_reason_becomes_stop_reason(finish_reason, expected):
    assert stop_reason(finish_reason) == expected


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status", "error_type", "retry"),
    [
        (ClientError("bad", param="top_k"), 400, "invalid_request_error", "false"),
        (ClientError("big", status_code=413), 413, "request_too_large", "false"),
        (APIKeyError("who?"), 401, "authentication_error", "false"),
        (WalletError("poor"), 402, "billing_error", "false"),
        (ModelError("no", status_code=403), 403, "permission_error", "false"),
        (ModelError("what?"), 404, "not_found_error", "false"),
        (BudgetError("slow down", code="rate_limit_exceeded"), 429, "rate_limit_error", None),
        (RouteError("breakers open", code="no_healthy_route"), 503, "api_error", None),
        (BudgetError("spent", code="daily_budget_exceeded"), 429, "rate_limit_error", "false"),
        (RouteError("none"), 503, "api_error", "false"),
        (UpstreamError("late", status_code=504), 504, "timeout_error", None),
    ],
)
def test_errors_take_anthropics_shape_and_a_status_the_sdk_maps(error: GlasskeyError, status, error_type, retry):
    body = error_body(error, "req_1")
    assert error.status_code == status
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type
    assert (body["error"]["request_id"], body["error"]["source"]) == ("req_1", error.source)
    assert body["error"]["details"]["error_code"] == error.code
    headers = error_headers(error, "req_1")
    assert headers["request-id"] == "req_1"
    assert headers.get("x-should-retry") == retry


# -- stream ---------------------------------------------------------------------------------


def anthropic_to_openai_lines(name: str) -> list[bytes]:
    """A recorded Anthropic stream as the lifecycle would relay it (OpenAI lines, usage, [DONE])."""
    parser = SSEParser()
    translator = StreamTranslator(created=0, model="m")
    lines = []
    for recorded in [*parser.feed(fixture(name).encode()), *parser.close()]:
        lines += [sse(chunk) for chunk in translator.feed(recorded.event or "", recorded.data)]
    return [*lines, SSE_DONE]


def translated_events(lines: list[bytes]) -> list[dict[str, Any]]:
    stream = MessageStream("msg_1", "m")
    raw = b"".join(stream.feed(line) for line in lines)
    parser = SSEParser()
    events = []
    for parsed in [*parser.feed(raw), *parser.close()]:
        data = orjson.loads(parsed.data)
        assert data["type"] == parsed.event  # the SSE event name and the JSON type agree
        if parsed.event not in ("ping", "error"):  # the SDK's stream handles these two apart
            EVENTS.validate_python(data)  # every other event is one the SDK's types accept
        events.append(data)
    return events


@pytest.mark.parametrize("name", ["basic_response.sse", "tool_use_response.sse", "recorded_stream_02.sse"])
def test_recorded_streams_come_back_as_the_same_events(name: str):
    original = [
        orjson.loads(line.removeprefix("data: ")) for line in fixture(name).splitlines() if line.startswith("data: ")
    ]
    events = translated_events(anthropic_to_openai_lines(name))

    def meaningful(stream: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # Pings and an empty first input_json_delta carry nothing a client keeps.
        return [e for e in stream if e["type"] != "ping" and (e.get("delta") or {}).get("partial_json") != ""]

    def outline(stream: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [(e["type"], e.get("index"), (e.get("delta") or {}).get("type")) for e in meaningful(stream)]

    def deltas(stream: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [e["delta"] for e in meaningful(stream) if e["type"] == "content_block_delta"]

    assert outline(events) == outline(original)
    assert deltas(events) == deltas(original)
    assert events[-2]["delta"]["stop_reason"] == original[-2]["delta"]["stop_reason"]
    assert events[-2]["usage"]["output_tokens"] == original[-2]["usage"]["output_tokens"]


def test_a_broken_stream_ends_with_an_error_event_and_no_message_stop():
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}],
    }
    broken = {"error": {"message": "The upstream stream broke mid-answer", "type": "api_error", "code": "upstream_502",
                        "param": None, "request_id": "req_9", "source": "upstream", "provider": "openai",
                        "upstream_status": 529, "upstream_type": "overloaded_error"}}  # fmt: skip
    events = translated_events([sse(chunk), sse(broken), SSE_DONE])
    assert [e["type"] for e in events] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "error",
    ]
    error = events[-1]["error"]
    assert (error["type"], error["source"], error["request_id"]) == ("overloaded_error", "upstream", "req_9")
    assert error["details"]["provider"] == "openai"


def test_reasoning_text_and_tool_calls_open_and_close_blocks_in_turn():
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return sse({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}
    lines = [
        chunk({"role": "assistant", "reasoning_content": "think"}),
        chunk({"content": "Hi"}),
        chunk({"tool_calls": [call]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
        chunk({}, "tool_calls"),
        sse({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}}),
        SSE_DONE,
    ]
    events = translated_events(lines)
    starts = [e["content_block"]["type"] for e in events if e["type"] == "content_block_start"]
    assert starts == ["thinking", "text", "tool_use"]
    assert [e["index"] for e in events if e["type"] == "content_block_stop"] == [0, 1, 2]
    assert events[-2]["usage"] == {
        "input_tokens": 7,
        "output_tokens": 3,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    assert events[-2]["delta"]["stop_reason"] == "tool_use"
    assert events[-1]["type"] == "message_stop"
