"""The gemini provider: translation both ways, the stream, errors, and the gateway end to end.

Translated request bodies are checked by the fake server's validator, which holds them to the
``google-genai`` SDK's types with their REST names only, so a misnamed field fails here. The
streaming tests feed the canned SSE of ``tests/fixtures/gemini`` (built from the SDK's types,
see its README). The end-to-end tests drive a real gateway with the official ``openai`` SDK,
against the fake Gemini server of ``fake_gemini``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import openai
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from sqlalchemy import MetaData, select

from conftest_helpers import make_settings
from fake_gemini import (
    ANSWER,
    FAKE_API_KEY,
    IMAGE_TOKENS,
    FakeGemini,
    validate_embed_request,
    validate_generate_request,
)
from fake_upstreams import upstream_route
from gateway_fixtures import ServerThread, free_port
from glasskey.app import build_app
from glasskey.errors import ClientError
from glasskey.keys.policy import KeyPolicy
from glasskey.keys.service import create_key
from glasskey.ledger import audit
from glasskey.orgs.service import create_org, top_up
from glasskey.pricing.catalog import get_model
from glasskey.pricing.metering import charge_for
from glasskey.providers.base import RouteTarget, StreamCut, Usage
from glasskey.providers.gemini import GeminiProvider, _error_of
from glasskey.providers.gemini_translate import (
    StreamTranslator,
    chat_completion,
    chat_request,
    embedding_batches,
    finish_reason,
    guess_image_mime,
    usage_of,
)
from glasskey.providers.http import UpstreamHTTP
from glasskey.providers.simulated import SimulatedProvider
from glasskey.providers.sse import SSEParser
from glasskey.routing.routes import create_route, update_route
from glasskey.services import Services, build_services
from scripted_upstream import Answer as Scripted
from scripted_upstream import Seen, scripted_upstream

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "gemini"
CHAT_MODEL = "gemini-2.5-flash"
EMBEDDING_MODEL = "gemini-embedding-001"
PNG_DATA_URL = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\nfake-image").decode()
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather now",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius"]}},
            "required": ["location"],
            "additionalProperties": False,
        },
    },
}


def fixture_json(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


def fixture_events(name: str, piece_bytes: int = 0) -> list[dict[str, Any]]:
    """The SSE fixture's events, fed to the parser whole or in tiny pieces."""
    raw = (FIXTURES / name).read_bytes()
    parser = SSEParser()
    pieces = [raw] if not piece_bytes else [raw[i : i + piece_bytes] for i in range(0, len(raw), piece_bytes)]
    events = [event for piece in pieces for event in parser.feed(piece)] + parser.close()
    return [json.loads(event.data) for event in events]


def translated(body: dict[str, Any]) -> dict[str, Any]:
    """``chat_request`` of an OpenAI body, which the fake Gemini must accept as valid."""
    request = chat_request({"model": CHAT_MODEL, **body})
    assert validate_generate_request(request) is None, validate_generate_request(request)
    return request


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


# -- request translation --------------------------------------------------------------------


def test_messages_become_contents_and_system_messages_the_system_instruction():
    request = translated(
        {
            "messages": [
                {"role": "system", "content": "Be terse."},
                {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
                user("Hello"),
                {"role": "assistant", "content": "Bonjour"},
                {"role": "user", "content": [{"type": "text", "text": "Again"}, {"type": "text", "text": "please"}]},
            ]
        }
    )
    assert request["systemInstruction"] == {"parts": [{"text": "Be terse."}, {"text": "Answer in French."}]}
    assert request["contents"] == [
        {"role": "user", "parts": [{"text": "Hello"}]},
        {"role": "model", "parts": [{"text": "Bonjour"}]},
        {"role": "user", "parts": [{"text": "Again"}, {"text": "please"}]},
    ]
    assert set(request) == {"contents", "systemInstruction"}


def test_sampling_parameters_map_into_generation_config():
    request = translated(
        {
            "messages": [user("hi")],
            "temperature": 0.3,
            "top_p": 0.9,
            "max_tokens": 99,
            "max_completion_tokens": 50,
            "stop": "END",
            "n": 2,
            "seed": 7,
            "presence_penalty": 0.5,
            "frequency_penalty": -0.5,
            "reasoning_effort": "low",
        }
    )
    assert request["generationConfig"] == {
        "temperature": 0.3,
        "topP": 0.9,
        "maxOutputTokens": 50,  # max_completion_tokens wins over the deprecated max_tokens
        "stopSequences": ["END"],
        "candidateCount": 2,
        "seed": 7,
        "presencePenalty": 0.5,
        "frequencyPenalty": -0.5,
        "thinkingConfig": {"thinkingBudget": 1024},
    }
    assert translated({"messages": [user("hi")], "max_tokens": 9, "stop": ["a", ""]})["generationConfig"] == {
        "maxOutputTokens": 9,
        "stopSequences": ["a"],
    }


def test_googles_thinking_config_extension_sets_the_exact_budget_and_thought_summaries():
    # ``extra_body.google.thinking_config``, as Google's OpenAI-compatible endpoint reads it (the
    # Anthropic endpoint's ``thinking`` arrives this way); the exact budget wins over an effort.
    thinking = {"google": {"thinking_config": {"thinking_budget": 5000, "include_thoughts": True}}}
    request = translated({"messages": [user("hi")], "reasoning_effort": "low", "extra_body": thinking})
    assert request["generationConfig"] == {"thinkingConfig": {"thinkingBudget": 5000, "includeThoughts": True}}


@pytest.mark.parametrize(
    ("extra_body", "param"),
    [
        ({"openai": {}}, "extra_body"),
        ({"google": {"safety_settings": []}}, "extra_body.google"),
        (
            {"google": {"thinking_config": {"thinking_level": "low"}}},
            "extra_body.google.thinking_config.thinking_level",
        ),
        ({"google": {"thinking_config": {"thinking_budget": -2}}}, "extra_body.google.thinking_config.thinking_budget"),
        (
            {"google": {"thinking_config": {"include_thoughts": "yes"}}},
            "extra_body.google.thinking_config.include_thoughts",
        ),
    ],
)
def test_any_other_extra_body_is_refused_naming_it(extra_body, param):
    with pytest.raises(ClientError) as caught:
        chat_request({"model": CHAT_MODEL, "messages": [user("hi")], "extra_body": extra_body})
    assert caught.value.param == param and caught.value.status_code == 400


def test_thought_summaries_come_back_as_reasoning_content_whole_and_streamed():
    parts = [{"text": "Pondering.", "thought": True}, {"text": "Hello."}]
    response = {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}]}
    body, _ = chat_completion(response, CHAT_MODEL, 0)
    message = body["choices"][0]["message"]
    assert message["content"] == "Hello." and message["reasoning_content"] == "Pondering."
    chunks = StreamTranslator(CHAT_MODEL, 0, include_usage=False).feed(response)
    assert chunks[0]["choices"][0]["delta"] == {
        "role": "assistant",
        "content": "Hello.",
        "reasoning_content": "Pondering.",
    }


def test_response_format_asks_for_json_and_passes_the_schema_as_json_schema():
    assert translated({"messages": [user("hi")], "response_format": {"type": "json_object"}})["generationConfig"] == {
        "responseMimeType": "application/json"
    }
    schema = {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}, "$defs": {"A": {"type": "string"}}}
    request = translated(
        {
            "messages": [user("hi")],
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}},
        }
    )
    assert request["generationConfig"] == {"responseMimeType": "application/json", "responseJsonSchema": schema}
    assert "generationConfig" not in translated({"messages": [user("hi")], "response_format": {"type": "text"}})


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        (None, None),
        ("auto", {"functionCallingConfig": {"mode": "AUTO"}}),
        ("required", {"functionCallingConfig": {"mode": "ANY"}}),
        ("none", {"functionCallingConfig": {"mode": "NONE"}}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
        ),
    ],
)
def test_tools_become_function_declarations_and_tool_choice_the_calling_mode(tool_choice, expected):
    body: dict[str, Any] = {"messages": [user("hi")], "tools": [WEATHER_TOOL], "tool_choice": tool_choice}
    request = translated(body)
    function = WEATHER_TOOL["function"]
    assert request["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "The weather now",
                    "parametersJsonSchema": function["parameters"],  # type: ignore[index]
                }
            ]
        }
    ]
    assert request.get("toolConfig") == expected


def test_tool_calls_and_results_become_function_calls_and_responses():
    request = translated(
        {
            "messages": [
                user("Weather and time in Paris?"),
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_a",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
                            "extra_content": {"google": {"thought_signature": "c2lnbmF0dXJl"}},
                        },
                        {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": ""}},
                    ],
                },
                {"role": "tool", "tool_call_id": "call_a", "content": '{"temperature": 21}'},
                {"role": "tool", "tool_call_id": "call_b", "content": "noon"},
                user("Thanks"),
            ],
            "tools": [WEATHER_TOOL, {"type": "function", "function": {"name": "get_time"}}],
        }
    )
    assert request["contents"][1] == {
        "role": "model",
        "parts": [
            {
                "functionCall": {"name": "get_weather", "args": {"location": "Paris"}},
                "thoughtSignature": "c2lnbmF0dXJl",
            },
            {"functionCall": {"name": "get_time", "args": {}}},
        ],
    }
    # Both results go back in one user turn (Gemini pairs them with the calls of the turn before),
    # followed by the user's next words.
    assert request["contents"][2] == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"temperature": 21}}},
            {"functionResponse": {"name": "get_time", "response": {"result": "noon"}}},
            {"text": "Thanks"},
        ],
    }
    assert request["tools"][0]["functionDeclarations"][1] == {"name": "get_time"}


def test_a_tool_result_for_an_unknown_call_is_refused():
    with pytest.raises(ClientError) as caught:
        chat_request({"messages": [user("x"), {"role": "tool", "tool_call_id": "call_zz", "content": "1"}]})
    assert caught.value.param == "messages[1].tool_call_id"


def test_images_by_data_url_and_by_https_url():
    request = translated(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Compare"},
                        {"type": "image_url", "image_url": {"url": PNG_DATA_URL, "detail": "high"}},
                        {"type": "image_url", "image_url": {"url": "https://example.com/cat.webp?size=2"}},
                        {"type": "image_url", "image_url": {"url": "https://example.com/photo"}},
                    ],
                }
            ]
        }
    )
    assert request["contents"][0]["parts"][1:] == [
        {"inlineData": {"mimeType": "image/png", "data": PNG_DATA_URL.split(",", 1)[1]}},
        {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.webp?size=2"}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/photo"}},
    ]
    assert guess_image_mime("https://x.test/a.PNG") == "image/png"
    assert guess_image_mime("https://x.test/a.pdf") == "image/jpeg"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"parallel_tool_calls": False, "tools": [WEATHER_TOOL]}, "parallel_tool_calls"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0]"),
        ({"response_format": {"type": "grammar"}}, "response_format"),
        ({"tool_choice": {"type": "allowed_tools", "allowed_tools": {}}, "tools": [WEATHER_TOOL]}, "tool_choice"),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
            "messages[0].content[0]",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/a"}}]}]},
            "messages[0].content[0]",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:a/b,xx"}}]}]},
            "messages[0].content[0]",
        ),
        ({"messages": [{"role": "function", "name": "f", "content": "1"}]}, "messages[0].role"),
    ],
)
def test_features_gemini_cannot_honour_are_refused_naming_param_and_provider(extra, param):
    with pytest.raises(ClientError) as caught:
        chat_request({"model": CHAT_MODEL, "messages": [user("hi")], **extra})
    assert caught.value.param == param
    assert caught.value.status_code == 400
    assert "gemini provider" in caught.value.message


def test_bookkeeping_parameters_and_harmless_defaults_are_accepted():
    request = translated(
        {
            "messages": [user("hi")],
            "user": "u-1",
            "metadata": {"a": "b"},
            "store": False,
            "service_tier": "auto",
            "logprobs": False,
            "modalities": ["text"],
            "parallel_tool_calls": True,
            "stream": True,
            "stream_options": {"include_usage": True},
            "top_logprobs": None,
        }
    )
    assert request == {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


def test_the_fake_refuses_misnamed_fields_so_translation_tests_have_teeth():
    good = translated({"messages": [user("hi")], "max_tokens": 5, "tools": [WEATHER_TOOL], "tool_choice": "required"})
    mutations = [
        {**good, "generation_config": good.pop("generationConfig", {})},
        {**good, "generationConfig": {"max_output_tokens": 5}},
        {**good, "generationConfig": {"maxTokens": 5}},
        {**good, "tools": [{"function_declarations": []}]},
        {**good, "toolConfig": {"functionCallingConfig": {"mode": "REQUIRED"}}},
        {**good, "contents": [{"role": "assistant", "parts": [{"text": "x"}]}]},
        {**good, "contents": [{"role": "user", "parts": [{"inline_data": {"mimeType": "image/png", "data": ""}}]}]},
        {**good, "contents": [{"role": "user", "parts": [{"inlineData": {"mimeType": "image/png", "data": "!!"}}]}]},
        {**good, "contents": [{"role": "user", "parts": [{"functionResponse": {"name": "f", "response": "x"}}]}]},
        {**good, "systemInstruction": {"parts": [{"txt": "x"}]}},
    ]
    for mutated in mutations:
        assert validate_generate_request(mutated) is not None, mutated


# -- response translation -------------------------------------------------------------------


def test_a_plain_answer_with_thinking_and_cached_tokens():
    body, usage = chat_completion(fixture_json("response_text.json"), "fallback-model", 1_700_000_000)
    ChatCompletion.model_validate(body)
    assert body["id"] == "chatcmpl-kQ9aaJqKLqfVz7IPg5LW0Qk"
    assert body["model"] == CHAT_MODEL
    assert body["choices"][0]["message"]["content"] == "Paris is the capital of France."
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {
        "prompt_tokens": 1210,
        "completion_tokens": 39,  # 8 answer tokens + 31 thinking tokens, both billed as output
        "total_tokens": 1249,
        "prompt_tokens_details": {"cached_tokens": 1024},
        "completion_tokens_details": {"reasoning_tokens": 31},
    }
    assert usage == Usage(input_tokens=1210, output_tokens=39, cached_tokens=1024)


def test_function_calls_become_tool_calls_with_ids_and_the_thought_signature():
    body, usage = chat_completion(fixture_json("response_tool_calls.json"), CHAT_MODEL, 0)
    ChatCompletion.model_validate(body)
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    calls = choice["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[1]["function"]["arguments"]) == {"timezone": "Europe/Paris"}
    assert all(c["id"].startswith("call_") for c in calls) and calls[0]["id"] != calls[1]["id"]
    assert calls[0]["extra_content"] == {"google": {"thought_signature": "EjRzaWduYXR1cmUtYnl0ZXM="}}
    assert "extra_content" not in calls[1]
    assert usage == Usage(96, 84, 0)
    # An id Gemini did send is kept.
    response = fixture_json("response_tool_calls.json")
    response["candidates"][0]["content"]["parts"][0]["functionCall"]["id"] = "gemini-id-1"
    assert chat_completion(response, CHAT_MODEL, 0)[0]["choices"][0]["message"]["tool_calls"][0]["id"] == "gemini-id-1"


def test_a_blocked_prompt_is_a_content_filter_finish():
    body, usage = chat_completion(fixture_json("response_blocked.json"), CHAT_MODEL, 0)
    ChatCompletion.model_validate(body)
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": None, "refusal": None},
            "logprobs": None,
            "finish_reason": "content_filter",
        }
    ]
    assert usage == Usage(12, 0, 0)


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
        ("OTHER", "stop"),
        (None, "stop"),
    ],
)
def test_finish_reasons(reason, expected):
    assert finish_reason(reason, has_tool_calls=False) == expected
    assert finish_reason(reason, has_tool_calls=True) == "tool_calls"


def test_missing_negative_and_odd_usage_numbers_never_crash():
    body, usage = usage_of({"promptTokenCount": -3, "candidatesTokenCount": "12", "thoughtsTokenCount": True})
    assert usage == Usage(-3, 12, 0)
    assert body["total_tokens"] == 9
    assert usage_of({})[1] == Usage(0, 0, 0)
    assert chat_completion({"candidates": [{"content": {"parts": [{"text": "x"}]}}]}, CHAT_MODEL, 0)[1] is None


# -- streaming ------------------------------------------------------------------------------


def translate_stream(events: list[dict[str, Any]], include_usage: bool = True) -> tuple[list[dict[str, Any]], Any]:
    translator = StreamTranslator(CHAT_MODEL, 0, include_usage)
    chunks = [chunk for event in events for chunk in translator.feed(event)]
    chunks += translator.finish()
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    return chunks, translator.usage


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


@pytest.mark.parametrize("piece_bytes", [0, 7])
def test_a_text_stream_is_translated_event_by_event(piece_bytes):
    events = fixture_events("stream_text.sse", piece_bytes)
    assert len(events) == 3
    translator = StreamTranslator(CHAT_MODEL, 0, include_usage=True)
    first = translator.feed(events[0])
    # The first event is forwarded as soon as it is translated, role and text together.
    assert first == [
        {
            "id": "chatcmpl-E1xaaLOvJ8Hgz7IPpLLW8Ak",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": CHAT_MODEL,
            "choices": [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": "Once upon a time"},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ],
            "usage": None,
        }
    ]
    chunks, usage = translate_stream(events)
    assert text_of(chunks) == "Once upon a time, a fox met a dog, and they became friends."
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 17 + 42
    assert chunks[-1]["usage"]["completion_tokens_details"] == {"reasoning_tokens": 42}
    assert usage == Usage(9, 59, 0)


def test_a_stream_without_include_usage_still_ends_with_the_usage_chunk():
    chunks, _ = translate_stream(fixture_events("stream_text.sse"), include_usage=False)
    assert all("usage" not in c for c in chunks[:-1])
    assert chunks[-1]["usage"]["prompt_tokens"] == 9


def test_a_stream_that_ends_without_a_finish_reason_is_cut():
    translator = StreamTranslator(CHAT_MODEL, 0, include_usage=False)
    chunks = [chunk for event in fixture_events("stream_cut.sse") for chunk in translator.feed(event)]
    assert text_of(chunks) == "Once upon a time, a fox met a"
    with pytest.raises(StreamCut) as caught:
        translator.finish()
    assert caught.value.status == 502


def test_an_error_inside_the_stream_is_a_cut_with_the_upstream_status():
    translator = StreamTranslator(CHAT_MODEL, 0, include_usage=False)
    events = fixture_events("stream_error.sse")
    chunks = [chunk for event in events[:2] for chunk in translator.feed(event)]
    assert text_of(chunks)
    with pytest.raises(StreamCut) as caught:
        translator.feed(events[2])
    assert (caught.value.status, caught.value.error_type) == (503, "UNAVAILABLE")
    assert "overloaded" in caught.value.message


def test_a_streamed_function_call_arrives_whole_with_its_signature():
    chunks, usage = translate_stream(fixture_events("stream_tool_call.sse"))
    delta = chunks[0]["choices"][0]["delta"]
    assert delta["role"] == "assistant" and delta["content"] is None
    [call] = delta["tool_calls"]
    assert call["index"] == 0 and call["id"].startswith("call_") and call["type"] == "function"
    assert call["function"] == {"name": "get_weather", "arguments": '{"location":"Paris"}'}
    assert call["extra_content"] == {"google": {"thought_signature": "c2lnLTE="}}
    assert chunks[1]["choices"][0]["finish_reason"] == "tool_calls"
    assert usage == Usage(40, 7, 0)


def test_a_stream_stopped_by_max_tokens_finishes_with_length():
    chunks, _ = translate_stream(fixture_events("stream_max_tokens.sse"))
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"


# -- errors ---------------------------------------------------------------------------------


def test_a_quota_error_keeps_status_type_and_retry_delay():
    error = _error_of(429, fixture_json("error_429.json"), httpx.Headers(), "secret-key")
    assert (error.status, error.error_type, error.retry_after) == (429, "RESOURCE_EXHAUSTED", "37")
    assert error.retriable
    with_header = _error_of(429, fixture_json("error_429.json"), httpx.Headers({"retry-after": "3"}), None)
    assert with_header.retry_after == "3"


def test_an_invalid_api_key_is_the_operators_credential_not_a_bad_request():
    error = _error_of(400, fixture_json("error_api_key_invalid.json"), httpx.Headers(), None)
    assert (error.status, error.error_type) == (401, "API_KEY_INVALID")
    plain = _error_of(400, fixture_json("error_400.json"), httpx.Headers(), None)
    assert (plain.status, plain.error_type) == (400, "INVALID_ARGUMENT")


def test_a_non_json_error_page_and_a_leaked_credential():
    page = b"<html><title>Error 502 (Server Error)!!1</title><p><b>502.</b> That's an error.</html>"
    error = _error_of(502, None, httpx.Headers(), None, raw=page)
    assert (error.status, error.error_type) == (502, "http_502")
    assert "That's an error." in error.message and "<" not in error.message
    leaked = {"error": {"code": 400, "message": "bad key AIzaSyCANARY0123456789", "status": "INVALID_ARGUMENT"}}
    assert "CANARY" not in _error_of(400, leaked, httpx.Headers(), "AIzaSyCANARY0123456789").message


# -- embeddings -----------------------------------------------------------------------------


def test_embedding_inputs_become_batches_of_at_most_one_hundred():
    batches = embedding_batches({"model": "m", "input": [f"text {i}" for i in range(250)], "dimensions": 64}, "m")
    assert [len(batch["requests"]) for batch in batches] == [100, 100, 50]
    assert batches[0]["requests"][0] == {
        "model": "models/m",
        "content": {"parts": [{"text": "text 0"}]},
        "outputDimensionality": 64,
    }
    assert all(validate_embed_request(batch, "m") is None for batch in batches)
    assert embedding_batches({"input": "one"}, "m") == [
        {"requests": [{"model": "models/m", "content": {"parts": [{"text": "one"}]}}]}
    ]
    for refused in ({"input": [1, 2, 3]}, {"input": [[1, 2]]}, {"input": "x", "task": "y"}):
        with pytest.raises(ClientError):
            embedding_batches(refused, "m")


# -- the provider against the fake server, without the gateway ------------------------------


@pytest.fixture(scope="module")
def fake_server() -> Iterator[tuple[FakeGemini, str]]:
    fake = FakeGemini()
    with ServerThread(fake.app) as server:
        yield fake, server.base_url


def make_target(base_url: str, **options: Any) -> RouteTarget:
    return RouteTarget("rt-1", "gemini", base_url, CHAT_MODEL, FAKE_API_KEY, options)


def run_provider(coroutine_factory: Any, **http_options: Any) -> Any:
    async def main() -> Any:
        http = UpstreamHTTP(**http_options)
        try:
            return await coroutine_factory(GeminiProvider(http))
        finally:
            await http.aclose()

    return asyncio.run(main())


def test_the_key_goes_in_the_header_and_never_in_the_url(fake_server):
    fake, url = fake_server
    fake.requests.clear()
    result = run_provider(lambda p: p.chat(make_target(url), {"messages": [user("hi")]}))
    assert result.body["choices"][0]["message"]["content"] == ANSWER
    [seen] = fake.requests
    assert seen.path == f"/v1beta/models/{CHAT_MODEL}:generateContent"
    assert seen.query == ""
    assert seen.headers["x-goog-api-key"] == FAKE_API_KEY
    assert "authorization" not in seen.headers


def test_a_base_url_with_a_version_and_a_credential_from_the_environment(fake_server):
    fake, url = fake_server
    fake.requests.clear()
    target = RouteTarget("rt-1", "gemini", f"{url}/v1beta/", f"models/{CHAT_MODEL}", "env:GEMINI_KEY_FOR_TEST")
    run_provider(lambda p: p.chat(target, {"messages": [user("hi")]}), environ={"GEMINI_KEY_FOR_TEST": FAKE_API_KEY})
    assert fake.last.path == f"/v1beta/models/{CHAT_MODEL}:generateContent"
    assert fake.last.headers["x-goog-api-key"] == FAKE_API_KEY


def test_a_refused_feature_never_reaches_the_upstream(fake_server):
    fake, url = fake_server
    fake.requests.clear()
    with pytest.raises(ClientError):
        run_provider(lambda p: p.chat(make_target(url), {"messages": [user("hi")], "logit_bias": {"1": 1}}))

    async def drain(provider: GeminiProvider) -> None:
        async for _ in provider.stream_chat(make_target(url), {"messages": [user("hi")], "logprobs": True}):
            pass

    with pytest.raises(ClientError):
        run_provider(drain)
    assert fake.requests == []


def test_two_candidates_stream_side_by_side(fake_server):
    _, url = fake_server

    async def collect(provider: GeminiProvider) -> list[dict[str, Any]]:
        body = {"messages": [user("hi")], "n": 2, "stream": True}
        return [chunk async for chunk in provider.stream_chat(make_target(url), body) if isinstance(chunk, dict)]

    chunks = run_provider(collect)
    texts = {0: "", 1: ""}
    finishes = {}
    for chunk in chunks[:-1]:
        [choice] = chunk["choices"]
        texts[choice["index"]] += choice["delta"].get("content") or ""
        if choice["finish_reason"]:
            finishes[choice["index"]] = choice["finish_reason"]
    assert texts == {0: ANSWER, 1: f"Candidate 1 says: {ANSWER}"}
    assert finishes == {0: "stop", 1: "stop"}
    assert chunks[-1]["usage"]["completion_tokens"] == len(ANSWER.split()) * 2 + 3


def test_many_embeddings_are_sent_in_batches(fake_server):
    fake, url = fake_server
    fake.requests.clear()
    target = RouteTarget("rt-e", "gemini", url, EMBEDDING_MODEL, FAKE_API_KEY)
    body = {"model": EMBEDDING_MODEL, "input": [f"text {i}" for i in range(150)], "dimensions": 4}
    result = run_provider(lambda p: p.embed(target, body))
    assert [r.path for r in fake.requests] == [f"/v1beta/models/{EMBEDDING_MODEL}:batchEmbedContents"] * 2
    assert len(result.body["data"]) == 150 and result.body["data"][149]["index"] == 149
    assert all(len(item["embedding"]) == 4 for item in result.body["data"])
    assert result.usage is None


def test_the_stream_is_forwarded_before_the_upstream_finishes():
    """A chunk comes out while the upstream is still holding the rest of its answer back."""
    release = threading.Event()
    events = fixture_events("stream_text.sse")
    body_of_request = {"messages": [user("hi")]}

    async def body() -> AsyncIterator[bytes]:
        yield b"data: " + json.dumps(events[0]).encode() + b"\r\n\r\n"
        while not release.is_set():  # the upstream runs on another thread's loop
            await asyncio.sleep(0.005)
        for event in events[1:]:
            yield b"data: " + json.dumps(event).encode() + b"\r\n\r\n"

    def handler(request: Seen) -> Scripted:
        assert "alt=sse" in request.query and "key=" not in request.query
        return Scripted(200, body, {"content-type": "text/event-stream"})

    async def main(base_url: str) -> list[dict[str, Any]]:
        http = UpstreamHTTP()
        chunks = []
        with anyio.fail_after(5):
            async for chunk in GeminiProvider(http).stream_chat(make_target(base_url), body_of_request):
                assert isinstance(chunk, dict)  # no PAUSE unless asked for
                chunks.append(chunk)
                release.set()
        await http.aclose()
        return chunks

    with scripted_upstream(handler) as (base_url, _):
        chunks = asyncio.run(main(base_url))
    assert text_of(chunks) == "Once upon a time, a fox met a dog, and they became friends."
    assert chunks[-1]["usage"]["total_tokens"] == 68


# -- end to end through the gateway ---------------------------------------------------------


@dataclass
class Env:
    services: Services
    fake: FakeGemini
    fake_url: str
    base_url: str
    key: str

    @property
    def sdk(self) -> OpenAI:
        return OpenAI(base_url=f"{self.base_url}/v1", api_key=self.key, max_retries=0)

    def receipts(self, **params: Any) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.base_url}/v1/receipts", params=params, headers={"authorization": f"Bearer {self.key}"}
        )
        assert response.status_code == 200
        data: list[dict[str, Any]] = response.json()["data"]
        return data

    def update_route(self, model: str = CHAT_MODEL, **changes: Any) -> None:
        with self.services.db.write() as conn:
            update_route(conn, f"rt-{model}", **changes)

    def prices_charge(self, usage: Usage) -> int:
        with self.services.db.read() as conn:
            return charge_for(usage, get_model(conn, CHAT_MODEL).official_prices)

    def audit_ok(self) -> None:
        with self.services.db.read() as conn:
            report = audit(conn)
        report.raise_if_broken()
        assert report.receipt_charges_micros == report.posted_charges_micros


def seed_gemini(services: Services, base_url: str, credential: str) -> str:
    now = services.clock()
    with services.db.write() as conn:
        org = create_org(conn, "acme", now)
        top_up(conn, org.id, "routed", 50_000_000, now)
        for model in (CHAT_MODEL, EMBEDDING_MODEL):
            create_route(conn, upstream_route(conn, model, "gemini", base_url, credential=credential), now)
        _, key = create_key(
            conn,
            pepper=services.pepper,
            org_id=org.id,
            name="gemini",
            policy=KeyPolicy(allowed_models=(CHAT_MODEL, EMBEDDING_MODEL), settlement="routed", lower_cost_routes=True),
            now=now,
        )
    return key


def start_env(tmp_path: Path, fake: FakeGemini, fake_url: str, credential: str) -> Iterator[Env]:
    providers: dict[str, Any] = {"gemini": GeminiProvider(UpstreamHTTP()), "simulated": SimulatedProvider()}
    services = build_services(make_settings(tmp_path), providers=providers)
    key = seed_gemini(services, fake_url, credential)
    with ServerThread(build_app(services)) as server:
        env = Env(services, fake, fake_url, server.base_url, key)
        yield env
        env.audit_ok()
    services.db.dispose()


@pytest.fixture
def env(tmp_path, fake_server) -> Iterator[Env]:
    fake, url = fake_server
    fake.requests.clear()
    yield from start_env(tmp_path, fake, url, FAKE_API_KEY)


def test_chat_is_served_billed_and_receipted(env):
    raw = env.sdk.chat.completions.with_raw_response.create(
        model=CHAT_MODEL, messages=[{"role": "system", "content": "Be kind."}, user("Say hello")]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == ANSWER
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == CHAT_MODEL
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (4, len(ANSWER.split()))
    [receipt] = env.receipts()
    assert receipt["provider"] == "gemini" and receipt["status"] == "succeeded"
    assert receipt["usage_source"] == "provider_reported"
    assert (receipt["input_tokens"], receipt["output_tokens"]) == (4, len(ANSWER.split()))
    assert receipt["charge_micros"] == int(raw.headers["x-glasskey-charge-micros"]) > 0
    [seen] = env.fake.requests
    assert seen.headers["x-goog-api-key"] == FAKE_API_KEY
    assert "key=" not in seen.url
    assert seen.body["systemInstruction"] == {"parts": [{"text": "Be kind."}]}


def test_streaming_with_usage_bills_what_the_upstream_reported(env):
    stream = env.sdk.chat.completions.create(
        model=CHAT_MODEL,
        messages=[user("Tell me [[thoughts:7]] [[cached:30]]")],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    words = len(ANSWER.split())
    assert (usage.prompt_tokens, usage.completion_tokens) == (4 + 30, words + 7)
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 30
    assert usage.completion_tokens_details is not None and usage.completion_tokens_details.reasoning_tokens == 7
    [receipt] = env.receipts()
    assert receipt["stream"] is True and receipt["status"] == "succeeded"
    assert (receipt["input_tokens"], receipt["output_tokens"], receipt["cached_tokens"]) == (34, words + 7, 30)
    assert receipt["usage_source"] == "provider_reported"
    assert receipt["charge_micros"] == env.prices_charge(Usage(34, words + 7, 30))
    assert env.fake.last.path.endswith(f"{CHAT_MODEL}:streamGenerateContent")
    assert env.fake.last.query == "alt=sse"


def test_a_tool_calling_round_trip(env):
    sdk = env.sdk
    messages: list[Any] = [user("What is the weather in Paris? [[tool:get_weather]] [[signature]]")]
    first = sdk.chat.completions.create(model=CHAT_MODEL, messages=messages, tools=[WEATHER_TOOL])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    [call] = choice.message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris", "unit": "celsius"}
    # The SDK's own message object goes back as is, thought signature (extra_content) included.
    messages += [choice.message, {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21}'}]
    second = sdk.chat.completions.create(model=CHAT_MODEL, messages=messages, tools=[WEATHER_TOOL])
    assert (
        second.choices[0].message.content == 'The tool answered: [{"name":"get_weather","response":{"temperature":21}}]'
    )
    contents = env.fake.last.body["contents"]
    assert contents[1]["role"] == "model"
    assert contents[1]["parts"][0]["functionCall"] == {
        "name": "get_weather",
        "args": {"location": "Paris", "unit": "celsius"},
    }
    assert base64.b64decode(contents[1]["parts"][0]["thoughtSignature"]) == b"fake-thought-signature-get_weather"
    assert contents[2] == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "get_weather", "response": {"temperature": 21}}}],
    }
    assert [r["status"] for r in env.receipts()] == ["succeeded", "succeeded"]


def test_a_streamed_tool_call(env):
    chunks = list(
        env.sdk.chat.completions.create(
            model=CHAT_MODEL,
            messages=[user("[[tool:get_weather]]")],
            tools=[WEATHER_TOOL],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            stream=True,
        )
    )
    calls = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
    assert [call.function.name for call in calls] == ["get_weather"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert env.fake.last.body["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }


def test_images_by_url_and_by_base64(env):
    completion = env.sdk.chat.completions.create(
        model=CHAT_MODEL,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What differs?"},
                    {"type": "image_url", "image_url": {"url": "https://images.example/cat.png"}},
                    {"type": "image_url", "image_url": {"url": PNG_DATA_URL}},
                ],
            }
        ],
    )
    assert completion.usage is not None and completion.usage.prompt_tokens == 2 + 2 * IMAGE_TOKENS
    parts = env.fake.last.body["contents"][0]["parts"]
    assert parts[1] == {"fileData": {"mimeType": "image/png", "fileUri": "https://images.example/cat.png"}}
    assert parts[2] == {"inlineData": {"mimeType": "image/png", "data": PNG_DATA_URL.split(",", 1)[1]}}


def test_n_stop_and_max_tokens(env):
    sdk = env.sdk
    two = sdk.chat.completions.create(model=CHAT_MODEL, messages=[user("hi")], n=2)
    assert [c.index for c in two.choices] == [0, 1]
    assert two.choices[1].message.content == f"Candidate 1 says: {ANSWER}"
    stopped = sdk.chat.completions.create(model=CHAT_MODEL, messages=[user("hi")], stop=["fox"])
    assert stopped.choices[0].message.content == ANSWER[: ANSWER.index("fox")]
    assert stopped.choices[0].finish_reason == "stop"
    capped = sdk.chat.completions.create(model=CHAT_MODEL, messages=[user("hi")], max_tokens=3)
    assert capped.choices[0].message.content == "Glasskey asked, and"
    assert capped.choices[0].finish_reason == "length"
    assert capped.usage is not None and capped.usage.completion_tokens == 3
    configs = [r.body["generationConfig"] for r in env.fake.requests]
    assert configs == [{"candidateCount": 2}, {"stopSequences": ["fox"]}, {"maxOutputTokens": 3}]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"logprobs": True}, "logprobs"),
        ({"logit_bias": {"1": 5}}, "logit_bias"),
        ({"parallel_tool_calls": False, "tools": [WEATHER_TOOL]}, "parallel_tool_calls"),
        ({"modalities": ["text", "audio"]}, "modalities"),
    ],
)
def test_a_feature_gemini_cannot_honour_is_a_client_error(env, extra, param):
    with pytest.raises(openai.BadRequestError) as caught:
        env.sdk.chat.completions.create(model=CHAT_MODEL, messages=[user("hi")], **extra)
    error = caught.value.body
    assert isinstance(error, dict)
    assert (error["source"], error["param"]) == ("client", param)
    assert "gemini provider" in error["message"]
    assert env.fake.requests == []
    [receipt] = env.receipts()
    assert receipt["status"] == "failed" and receipt["charge_micros"] == 0


def test_embeddings_in_base64_and_floats(env):
    sdk = env.sdk
    decoded = sdk.embeddings.create(model=EMBEDDING_MODEL, input=["hello world", "bye"])
    floats = sdk.embeddings.create(model=EMBEDDING_MODEL, input=["hello world", "bye"], encoding_format="float")
    assert len(decoded.data) == 2 and len(decoded.data[0].embedding) == 3072
    for a, b in zip(decoded.data[1].embedding, floats.data[1].embedding, strict=True):
        assert a == pytest.approx(b, rel=1e-6)
    small = sdk.embeddings.create(model=EMBEDDING_MODEL, input="one", dimensions=8, encoding_format="float")
    assert len(small.data[0].embedding) == 8
    assert env.fake.last.body == {
        "requests": [
            {"model": f"models/{EMBEDDING_MODEL}", "content": {"parts": [{"text": "one"}]}, "outputDimensionality": 8}
        ]
    }
    # Gemini reports no embedding usage: the gateway bills its own estimate and shows the same to the client.
    receipts = env.receipts()
    assert decoded.usage.prompt_tokens == receipts[-1]["input_tokens"] > 0
    assert [r["usage_source"] for r in receipts] == ["estimated"] * 3
    assert all(r["input_tokens"] > 0 and r["charge_micros"] > 0 for r in receipts)
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.embeddings.create(model=EMBEDDING_MODEL, input=[[1, 2, 3]])
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "input"


UPSTREAM_ERRORS = [
    # upstream status, gateway status, openai exception, upstream type
    (400, 400, openai.BadRequestError, "INVALID_ARGUMENT"),
    (401, 502, openai.InternalServerError, "UNAUTHENTICATED"),
    (403, 502, openai.InternalServerError, "PERMISSION_DENIED"),
    (404, 502, openai.InternalServerError, "NOT_FOUND"),
    (408, 502, openai.InternalServerError, "http_408"),
    (409, 502, openai.InternalServerError, "ABORTED"),
    (413, 413, openai.APIStatusError, "http_413"),
    (429, 429, openai.RateLimitError, "RESOURCE_EXHAUSTED"),
    (500, 502, openai.InternalServerError, "INTERNAL"),
    (502, 502, openai.InternalServerError, "http_502"),
    (503, 502, openai.InternalServerError, "UNAVAILABLE"),
    (504, 502, openai.InternalServerError, "DEADLINE_EXCEEDED"),
]


@pytest.mark.parametrize("stream", [False, True])
def test_each_upstream_error_is_attributed_to_gemini(env, stream):
    # Many failures in a row would open the route's breaker; this test is about attribution.
    env.update_route(forced_circuit="closed")
    for upstream, status, exception, upstream_type in UPSTREAM_ERRORS:
        with pytest.raises(openai.APIStatusError) as caught:
            result = env.sdk.chat.completions.create(
                model=CHAT_MODEL, messages=[user(f"[[error:{upstream}]]")], stream=stream
            )
            list(result) if stream else None
        assert type(caught.value) is exception, upstream
        assert caught.value.status_code == status
        error = caught.value.body
        assert isinstance(error, dict)
        assert error["source"] == "upstream"
        assert (error["provider"], error["upstream_status"], error["upstream_type"]) == (
            "gemini",
            upstream,
            upstream_type,
        )
        if upstream == 429:
            assert caught.value.response.headers["retry-after"] == "7"  # from Google's RetryInfo
    failed = env.receipts(status="failed", limit=50)
    assert len(failed) == len(UPSTREAM_ERRORS)
    assert all(r["charge_micros"] == 0 for r in failed)


def test_retry_after_header_is_passed_on(env):
    with pytest.raises(openai.RateLimitError) as caught:
        env.sdk.chat.completions.create(model=CHAT_MODEL, messages=[user("[[error:429]] [[retry-after:3]]")])
    assert caught.value.response.headers["retry-after"] == "3"


def test_an_invalid_upstream_key_is_not_the_clients_authentication_error(env):
    env.update_route(credential="AIzaSy-not-the-right-key-0000000000")
    with pytest.raises(openai.APIStatusError) as caught:
        env.sdk.chat.completions.create(model=CHAT_MODEL, messages=[user("hi")])
    assert not isinstance(caught.value, openai.AuthenticationError)
    assert caught.value.status_code == 502
    assert isinstance(caught.value.body, dict)
    assert (caught.value.body["upstream_status"], caught.value.body["upstream_type"]) == (401, "API_KEY_INVALID")


def test_timeout_and_network_error(env):
    env.update_route(options={"timeout_first_byte_ms": 200, "timeout_connect_ms": 100})
    with pytest.raises(openai.InternalServerError) as caught:
        env.sdk.chat.completions.create(model=CHAT_MODEL, messages=[user("[[slow:1000]]")])
    assert caught.value.status_code == 504
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "upstream_timeout"
    env.update_route(options={}, base_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(openai.InternalServerError) as caught:
        env.sdk.chat.completions.create(model=CHAT_MODEL, messages=[user("hi")])
    assert caught.value.status_code == 502
    assert isinstance(caught.value.body, dict)
    assert (caught.value.body["provider"], caught.value.body["upstream_type"]) == ("gemini", "network_error")
    assert [r["status"] for r in env.receipts()] == ["failed", "failed"]


def stream_events(env: Env, prompt: str) -> list[str]:
    response = httpx.post(
        f"{env.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {env.key}"},
        json={"model": CHAT_MODEL, "messages": [user(prompt)], "stream": True},
    )
    assert response.status_code == 200
    return [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]


@pytest.mark.parametrize(("prompt", "upstream_status"), [("[[cut:2]]", 502), ("[[stream-error]]", 503)])
def test_a_stream_broken_mid_answer_ends_in_band_and_bills_only_what_was_sent(env, prompt, upstream_status):
    events = stream_events(env, prompt)
    assert "[DONE]" not in events
    error = json.loads(events[-1])["error"]
    assert (error["source"], error["provider"], error["upstream_status"]) == ("upstream", "gemini", upstream_status)
    sent = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert sent and sent != ANSWER
    [receipt] = env.receipts()
    assert receipt["status"] == "failed" and receipt["usage_source"] == "estimated"
    assert 0 < receipt["charge_micros"] < receipt["hold_micros"]
    with pytest.raises(openai.APIError):
        list(env.sdk.chat.completions.create(model=CHAT_MODEL, messages=[user(prompt)], stream=True))


def test_a_blocked_prompt_is_a_content_filter_answer(env):
    blocked = env.sdk.chat.completions.create(model=CHAT_MODEL, messages=[user("[[blocked]]")])
    assert blocked.choices[0].finish_reason == "content_filter"
    assert blocked.choices[0].message.content is None
    chunks = list(env.sdk.chat.completions.create(model=CHAT_MODEL, messages=[user("[[safety]]")], stream=True))
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "content_filter"


def test_untrusted_usage_is_clamped_and_flagged(env):
    env.sdk.chat.completions.create(model=CHAT_MODEL, messages=[user("[[negative-usage]]")])
    missing = env.sdk.chat.completions.create(model=CHAT_MODEL, messages=[user("[[no-usage]]")])
    assert missing.usage is None
    negative, estimated = reversed(env.receipts())
    assert negative["output_tokens"] == 0 and "negative_usage_clamped" in negative["flags"]
    assert estimated["usage_source"] == "estimated" and estimated["output_tokens"] > 0


CANARY = "AIzaSyCANARY-9f8e7d6c5b4a-gemini-canary"


def every_error_path(env: Env) -> list[str]:
    """Run each failure the gateway can meet on a gemini route; the bodies and headers it answered."""
    env.update_route(forced_circuit="closed")  # a breaker opening would hide the later paths
    bodies = []

    def post(path: str, body: dict[str, Any]) -> None:
        response = httpx.post(f"{env.base_url}/v1/{path}", headers={"authorization": f"Bearer {env.key}"}, json=body)
        bodies.append(response.text + json.dumps(dict(response.headers)))

    def chat(prompt: str, stream: bool = False) -> None:
        post("chat/completions", {"model": CHAT_MODEL, "messages": [user(prompt)], "stream": stream})

    chat("hello")
    for upstream, *_ in UPSTREAM_ERRORS:
        chat(f"[[error:{upstream}]] [[leak]]")
        chat(f"[[error:{upstream}]] [[leak]]", stream=True)
    chat("[[stream-error]] [[leak]]", stream=True)
    chat("[[cut:1]]", stream=True)
    post("embeddings", {"model": EMBEDDING_MODEL, "input": "[[error:500]] [[leak]]"})
    env.update_route(options={"timeout_first_byte_ms": 100, "timeout_connect_ms": 100})
    chat("[[slow:600]]")
    env.update_route(credential=CANARY + "-wrong")
    chat("hi")
    env.update_route(base_url=f"http://127.0.0.1:{free_port()}", credential=CANARY)
    chat("hi")
    chat("hi", stream=True)
    return bodies


def test_the_canary_credential_appears_nowhere(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    fake = FakeGemini(api_key=CANARY)
    with ServerThread(fake.app) as server:
        for env in start_env(tmp_path, fake, server.base_url, CANARY):
            bodies = every_error_path(env)
            with env.services.db.read() as conn:
                metadata = MetaData()
                metadata.reflect(conn)
                receipts = [repr(tuple(row)) for row in conn.execute(select(metadata.tables["receipts"]))]
    assert len(receipts) == len(bodies)
    assert all(r.headers["x-goog-api-key"].startswith(CANARY) for r in fake.requests)
    assert sum("[credential]" in body for body in bodies) >= len(UPSTREAM_ERRORS)  # the fake did leak it
    logs = "\n".join(record.getMessage() for record in caplog.records)
    urls = [r.url for r in fake.requests]
    for fragment in (CANARY, CANARY[8:24]):
        assert not any(fragment in body for body in bodies)
        assert not any(fragment in receipt for receipt in receipts)
        assert fragment not in logs
        assert not any(fragment in url for url in urls)
