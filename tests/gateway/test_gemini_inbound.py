"""The Gemini API's translation, both ways, table by table and without a server.

Requests go from Gemini's REST shape to OpenAI's chat body; each translated body is held to the
official ``openai`` SDK's request types by the fake OpenAI's strict validator, so a misnamed
field fails here. Answers go from OpenAI's shapes (the recorded real responses and streams of
``tests/fixtures/openai``) to Gemini's; each is held to the ``google-genai`` SDK's response types,
which forbid unknown fields.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.genai import types

from fake_openai import CHAT_TYPES, CHAT_VALIDATORS, check_request, fixture_json, recorded_chunks
from glasskey.errors import (
    APIKeyError,
    BudgetError,
    ClientError,
    GlasskeyError,
    ModelError,
    UpstreamError,
    WalletError,
    error_body,
)
from glasskey.gateway.gemini_answers import (
    GLASSKEY_ERROR_TYPE,
    StreamAnswer,
    embed_response,
    generate_response,
    google_error,
    usage_metadata,
)
from glasskey.gateway.gemini_inbound import chat_body, embedding_body
from glasskey.gateway.gemini_inbound_config import json_schema_of
from glasskey.gateway.inbound_thinking import GEMINI_ENDPOINT, for_route
from glasskey.gateway.outcomes import SSE_DONE, sse

MODEL = "gemini-2.5-flash"
RECORDED_COMPLETIONS = [f"chat_completion_{n:02d}.json" for n in range(14)]
RECORDED_STREAMS = [
    "stream_173417d55340.sse",
    "stream_2018feb66ae1.sse",
    "stream_a247c49c5fcd.sse",
    "stream_a491adda08c3.sse",
    "stream_c6aa7e397b71.sse",
    "stream_f82268f2fefd.sse",
]


def user(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "parts": list(parts)}


def translated(request: dict[str, Any], *, stream: bool = False) -> dict[str, Any]:
    """``chat_body`` of a Gemini request, which the openai SDK's own types must accept as an
    OpenAI route gets it (Gemini's exact thinking settings, for Gemini routes, taken out)."""
    body = chat_body(MODEL, request, stream=stream)
    sent, _ = for_route(GEMINI_ENDPOINT, "openai", body)
    problem = check_request(sent, CHAT_TYPES[stream], CHAT_VALIDATORS[stream])
    assert problem is None, problem
    return body


def refusal(request: dict[str, Any]) -> ClientError:
    with pytest.raises(ClientError) as caught:
        chat_body(MODEL, request, stream=False)
    assert caught.value.status_code == 400
    return caught.value


# -- requests ---------------------------------------------------------------------------------


def test_system_instruction_contents_and_sampling():
    body = translated(
        {
            "systemInstruction": {"parts": [{"text": "Be terse."}, {"text": "Answer in French."}]},
            "contents": [
                user({"text": "Hello"}),
                {"role": "model", "parts": [{"text": "Bonjour"}]},
                user({"text": "?"}),
            ],
            "generationConfig": {
                "temperature": 0.2,
                "topP": 0.9,
                "maxOutputTokens": 64,
                "stopSequences": ["END"],
                "candidateCount": 2,
                "presencePenalty": 0.5,
                "frequencyPenalty": 0.25,
                "seed": 7,
            },
        }
    )
    assert body == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "Be terse.\n\nAnswer in French."},
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Bonjour"},
            {"role": "user", "content": "?"},
        ],
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 64,
        "stop": ["END"],
        "n": 2,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.25,
        "seed": 7,
    }


def test_snake_case_names_nulls_and_a_missing_role_are_read_as_google_reads_them():
    body = translated(
        {"contents": [{"parts": [{"text": "hi"}]}], "generation_config": {"max_output_tokens": 5, "top_p": None}}
    )
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert body["max_tokens"] == 5 and "top_p" not in body


def test_a_stream_asks_the_upstream_for_usage():
    body = translated({"contents": [user({"text": "hi"})]}, stream=True)
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    ("part", "expected"),
    [
        (
            {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ),
        (
            {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        ),
        (
            {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0=", "displayName": "q3.pdf"}},
            {"type": "file", "file": {"filename": "q3.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}},
        ),
        (
            {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.jpg"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        ),
    ],
)
def test_media_parts_become_openai_content_parts(part, expected):
    body = translated({"contents": [user(part, {"text": "What is this?"})]})
    assert body["messages"] == [{"role": "user", "content": [expected, {"type": "text", "text": "What is this?"}]}]


def test_function_calls_and_their_answers_pair_up_by_id_then_by_name():
    body = chat_body(
        MODEL,
        {
            "contents": [
                user({"text": "Weather and time in Paris?"}),
                {
                    "role": "model",
                    "parts": [
                        {"thought": True, "text": "I should call both."},
                        {
                            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                            "thoughtSignature": "c2ln",
                        },
                        {"functionCall": {"id": "t-1", "name": "get_time", "args": {}}},
                    ],
                },
                user(
                    {"functionResponse": {"id": "t-1", "name": "get_time", "response": {"time": "12:00"}}},
                    {"functionResponse": {"name": "get_weather", "response": {"sky": "clear"}}},
                    {"text": "Thanks"},
                ),
            ]
        },
        stream=False,
    )
    # The thought signature rides where Google's OpenAI-compatible endpoint carries it, which the
    # openai SDK's types do not know; everything else is a valid OpenAI body.
    plain = json.loads(json.dumps(body).replace(', "extra_content": {"google": {"thought_signature": "c2ln"}}', ""))
    assert check_request(plain, CHAT_TYPES[False], CHAT_VALIDATORS[False]) is None
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    "extra_content": {"google": {"thought_signature": "c2ln"}},
                },
                {"id": "t-1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "t-1", "content": '{"time":"12:00"}'},
        {"role": "tool", "tool_call_id": "call_1_1", "content": '{"sky":"clear"}'},
        {"role": "user", "content": "Thanks"},
    ]


def test_an_answer_to_no_call_is_refused_naming_it():
    error = refusal({"contents": [user({"functionResponse": {"name": "get_weather", "response": {}}})]})
    assert error.param == "contents[0].parts[0].functionResponse"


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"responseMimeType": "application/json"}, {"response_format": {"type": "json_object"}}),
        (
            {"responseMimeType": "application/json", "responseJsonSchema": {"type": "object", "$defs": {}}},
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "response", "schema": {"type": "object", "$defs": {}}},
                }
            },
        ),
        ({"responseMimeType": "text/plain"}, {}),
        ({"thinkingConfig": {"thinkingBudget": 0}}, {"reasoning_effort": "none"}),
        ({"thinkingConfig": {"thinkingBudget": 512}}, {"reasoning_effort": "low"}),
        ({"thinkingConfig": {"thinkingBudget": 5000}}, {"reasoning_effort": "medium"}),
        ({"thinkingConfig": {"thinkingBudget": 100000}}, {"reasoning_effort": "high"}),
        ({"thinkingConfig": {"thinkingBudget": -1, "includeThoughts": True}}, {}),
        ({"thinkingConfig": {"thinkingLevel": "HIGH"}}, {"reasoning_effort": "high"}),
        ({"responseModalities": ["TEXT"]}, {}),
        ({"responseLogprobs": False}, {}),
    ],
)
def test_generation_config_table(config, expected):
    # As a route other than Gemini's gets it (Gemini's also gets the exact budget: below).
    body, _ = for_route(
        GEMINI_ENDPOINT, "openai", translated({"contents": [user({"text": "hi"})], "generationConfig": config})
    )
    assert {k: v for k, v in body.items() if k not in ("model", "messages")} == expected


def test_googles_schema_becomes_json_schema():
    schema = {
        "type": "OBJECT",
        "properties": {
            "name": {"type": "STRING", "description": "who"},
            "age": {"type": "INTEGER", "nullable": True},
            "tags": {"type": "ARRAY", "items": {"type": "STRING", "enum": ["a", "b"]}},
        },
        "required": ["name"],
        "propertyOrdering": ["name", "age", "tags"],
    }
    assert json_schema_of(schema) == {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "who"},
            "age": {"type": ["integer", "null"]},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
        },
        "required": ["name"],
    }
    body = translated(
        {
            "contents": [user({"text": "hi"})],
            "generationConfig": {"responseMimeType": "application/json", "responseSchema": schema},
        }
    )
    assert body["response_format"]["json_schema"]["schema"] == json_schema_of(schema)


WEATHER = {"name": "get_weather", "description": "Now", "parameters": {"type": "OBJECT", "properties": {}}}
TIME = {"name": "get_time", "parametersJsonSchema": {"type": "object", "properties": {"tz": {"type": "string"}}}}


@pytest.mark.parametrize(
    ("tool_config", "names", "choice"),
    [
        (None, ["get_weather", "get_time"], None),
        ({"functionCallingConfig": {"mode": "AUTO"}}, ["get_weather", "get_time"], "auto"),
        ({"functionCallingConfig": {"mode": "NONE"}}, ["get_weather", "get_time"], "none"),
        ({"functionCallingConfig": {"mode": "ANY"}}, ["get_weather", "get_time"], "required"),
        ({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_time"]}}, ["get_time"], "required"),
    ],
)
def test_tools_and_tool_config_table(tool_config, names, choice):
    request: dict[str, Any] = {
        "contents": [user({"text": "hi"})],
        "tools": [{"functionDeclarations": [WEATHER, TIME]}],
    }
    if tool_config is not None:
        request["toolConfig"] = tool_config
    body = translated(request)
    assert [tool["function"]["name"] for tool in body["tools"]] == names
    assert body.get("tool_choice") == choice
    weather = [tool["function"] for tool in body["tools"] if tool["function"]["name"] == "get_weather"]
    assert not weather or weather[0] == {
        "name": "get_weather",
        "description": "Now",
        "parameters": {"type": "object", "properties": {}},
    }


@pytest.mark.parametrize(
    ("request_body", "param"),
    [
        ({"generationConfig": {"topK": 40}}, "generationConfig.topK"),
        ({"safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]}, "safetySettings"),
        ({"cachedContent": "cachedContents/abc"}, "cachedContent"),
        ({"tools": [{"googleSearch": {}}]}, "tools[0].googleSearch"),
        ({"tools": [{"codeExecution": {}}]}, "tools[0].codeExecution"),
        (
            {
                "tools": [{"functionDeclarations": [WEATHER]}],
                "toolConfig": {"functionCallingConfig": {"mode": "VALIDATED"}},
            },
            "toolConfig.functionCallingConfig.mode",
        ),
        (
            {
                "tools": [{"functionDeclarations": [WEATHER]}],
                "toolConfig": {"functionCallingConfig": {"mode": "AUTO", "allowedFunctionNames": ["get_weather"]}},
            },
            "toolConfig.functionCallingConfig.allowedFunctionNames",
        ),
        ({"generationConfig": {"responseModalities": ["IMAGE"]}}, "generationConfig.responseModalities"),
        ({"generationConfig": {"responseLogprobs": True}}, "generationConfig.responseLogprobs"),
        ({"generationConfig": {"responseMimeType": "text/x.enum"}}, "generationConfig.responseMimeType"),
        ({"generationConfig": {"speechConfig": {}}}, "generationConfig.speechConfig"),
        ({"contents": [user({"executableCode": {"code": "1"}})]}, "contents[0].parts[0].executableCode"),
        (
            {"contents": [user({"inlineData": {"mimeType": "video/mp4", "data": "AAAA"}})]},
            "contents[0].parts[0].inlineData.mimeType",
        ),
        (
            {"contents": [user({"fileData": {"fileUri": "https://generativelanguage.googleapis.com/v1beta/files/x"}})]},
            "contents[0].parts[0].fileData",
        ),
        (
            {"contents": [user({"fileData": {"fileUri": "https://example.com/talk.mp4", "mimeType": "video/mp4"}})]},
            "contents[0].parts[0].fileData",
        ),
        ({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}, "contents[0].role"),
    ],
)
def test_what_an_openai_body_cannot_carry_is_a_400_naming_the_field(request_body, param):
    request = {"contents": [user({"text": "hi"})], **request_body}
    assert refusal(request).param == param


def test_empty_contents_are_refused():
    assert refusal({"contents": []}).param == "contents"
    assert refusal({"contents": [{"role": "model", "parts": [{"thought": True, "text": "x"}]}]}).param == "contents"


def test_embedding_requests_one_and_many():
    one = embedding_body(
        MODEL, {"content": {"parts": [{"text": "a"}, {"text": "b"}]}, "outputDimensionality": 8}, batch=False
    )
    assert one == {"model": MODEL, "input": "ab", "dimensions": 8}
    many = embedding_body(
        MODEL,
        {"requests": [{"model": f"models/{MODEL}", "content": {"parts": [{"text": t}]}} for t in ("x", "y")]},
        batch=True,
    )
    assert many == {"model": MODEL, "input": ["x", "y"]}


@pytest.mark.parametrize(
    ("request_body", "param"),
    [
        (
            {"requests": [{"content": {"parts": [{"text": "x"}]}, "taskType": "RETRIEVAL_QUERY"}]},
            "requests[0].taskType",
        ),
        ({"requests": [{"model": "models/other", "content": {"parts": [{"text": "x"}]}}]}, "model"),
        (
            {
                "requests": [
                    {"content": {"parts": [{"text": "x"}]}, "outputDimensionality": 8},
                    {"content": {"parts": [{"text": "y"}]}},
                ]
            },
            "requests.outputDimensionality",
        ),
    ],
)
def test_embedding_requests_that_cannot_be_carried(request_body, param):
    with pytest.raises(ClientError) as caught:
        embedding_body(MODEL, request_body, batch=True)
    assert caught.value.param == param


# -- answers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", RECORDED_COMPLETIONS)
def test_every_recorded_completion_becomes_a_valid_generate_content_response(name):
    completion = fixture_json(name)
    response = generate_response(completion)
    parsed = types.GenerateContentResponse.model_validate(response)  # unknown fields are refused
    assert parsed.candidates is not None and len(parsed.candidates) == len(completion["choices"])
    for candidate, choice in zip(parsed.candidates, completion["choices"], strict=True):
        message = choice["message"]
        parts = candidate.content.parts if candidate.content and candidate.content.parts else []
        # A refusal is the model's answer to read: it comes as text.
        assert "".join(p.text or "" for p in parts) == (message.get("content") or message.get("refusal") or "")
        calls = [p.function_call for p in parts if p.function_call]
        assert [(c.id, c.name, c.args) for c in calls] == [
            (t["id"], t["function"]["name"], json.loads(t["function"]["arguments"]))
            for t in message.get("tool_calls") or []
        ]
    assert parsed.usage_metadata is not None
    assert parsed.usage_metadata.total_token_count == completion["usage"]["total_tokens"]
    assert parsed.response_id == completion["id"].removeprefix("chatcmpl-")


@pytest.mark.parametrize(
    ("openai_reason", "gemini_reason"),
    [
        ("stop", "STOP"),
        ("tool_calls", "STOP"),
        ("length", "MAX_TOKENS"),
        ("content_filter", "SAFETY"),
        ("odd", "OTHER"),
    ],
)
def test_finish_reasons(openai_reason, gemini_reason):
    completion = {
        "id": "x",
        "model": "m",
        "choices": [{"index": 0, "message": {"content": "a"}, "finish_reason": openai_reason}],
    }
    assert generate_response(completion)["candidates"][0]["finishReason"] == gemini_reason


def test_usage_keeps_thoughts_apart_and_cached_tokens():
    usage = {
        "prompt_tokens": 1210,
        "completion_tokens": 39,
        "total_tokens": 1249,
        "prompt_tokens_details": {"cached_tokens": 1024},
        "completion_tokens_details": {"reasoning_tokens": 31},
    }
    assert usage_metadata(usage) == {
        "promptTokenCount": 1210,
        "candidatesTokenCount": 8,
        "totalTokenCount": 1249,
        "cachedContentTokenCount": 1024,
        "thoughtsTokenCount": 31,
    }


def stream_of(chunks: list[dict[str, Any]], *, done: bool = True) -> list[dict[str, Any]]:
    """The Gemini events of the relay's events (``sse`` of each chunk, then ``[DONE]``)."""
    answer = StreamAnswer()
    raw = [event for chunk in chunks for event in answer.feed(sse(chunk))] + (answer.feed(SSE_DONE) if done else [])
    assert all(event.startswith(b"data: ") and event.endswith(b"\r\n\r\n") for event in raw)
    return [json.loads(event[len(b"data: ") :]) for event in raw]


@pytest.mark.parametrize("name", RECORDED_STREAMS)
def test_every_recorded_stream_becomes_valid_gemini_events_with_the_same_answer(name):
    chunks = recorded_chunks(name)
    events = stream_of(chunks)
    parsed = [types.GenerateContentResponse.model_validate(event) for event in events]
    choices = {choice["index"] for chunk in chunks for choice in chunk.get("choices") or ()}
    for index in choices:
        deltas = [c["delta"] for chunk in chunks for c in chunk.get("choices") or () if c["index"] == index]
        parts = [
            part
            for event in parsed
            for candidate in event.candidates or ()
            if candidate.index == index and candidate.content
            for part in candidate.content.parts or ()
        ]
        assert "".join(p.text or "" for p in parts) == "".join(
            d.get("content") or d.get("refusal") or "" for d in deltas
        )
        arguments: dict[int, str] = {}
        for delta in deltas:
            for call in delta.get("tool_calls") or ():
                arguments[call["index"]] = arguments.get(call["index"], "") + (call["function"].get("arguments") or "")
        # A function call arrives whole, in one part, as Gemini sends it.
        assert [p.function_call.args for p in parts if p.function_call] == [
            json.loads(arguments[i]) for i in sorted(arguments)
        ]
        finishes = [c.finish_reason for e in parsed for c in e.candidates or () if c.index == index and c.finish_reason]
        assert len(finishes) == 1
    usage = [chunk["usage"] for chunk in chunks if chunk.get("usage")][-1]
    assert parsed[-1].usage_metadata is not None
    assert parsed[-1].usage_metadata.total_token_count == usage["total_tokens"]
    assert all(event.usage_metadata is None for event in parsed[:-1])


def test_an_in_band_error_becomes_googles_error_object_and_done_is_dropped():
    text = {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": "Once"}, "finish_reason": None}]}
    failure = UpstreamError("The upstream stream broke mid-answer: gemini answered 502", code="upstream_502")
    events = stream_of([text, {"error": error_body(failure, "req_1")["error"]}], done=False)
    assert events[0]["candidates"][0]["content"]["parts"] == [{"text": "Once"}]
    error = events[1]["error"]
    assert error["code"] == 502 and error["status"] == "UNAVAILABLE"
    assert next(d for d in error["details"] if d["@type"] == GLASSKEY_ERROR_TYPE)["request_id"] == "req_1"
    assert stream_of([text]) == stream_of([text], done=False)  # nothing is sent for [DONE]


def test_embeddings_answers():
    listing = {"data": [{"index": 1, "embedding": [0.5]}, {"index": 0, "embedding": [0.25]}]}
    assert embed_response(listing, batch=True) == {"embeddings": [{"values": [0.25]}, {"values": [0.5]}]}
    assert embed_response({"data": [{"index": 0, "embedding": [0.25]}]}, batch=False) == {
        "embedding": {"values": [0.25]}
    }


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ClientError("bad", param="generationConfig.topK"), "INVALID_ARGUMENT"),
        (APIKeyError("no such key"), "UNAUTHENTICATED"),
        (ModelError("not allowed", status_code=403), "PERMISSION_DENIED"),
        (ModelError("unknown"), "NOT_FOUND"),
        (WalletError("empty"), "FAILED_PRECONDITION"),
        (BudgetError("slow down", code="rate_limit_exceeded", headers={"retry-after": "3"}), "RESOURCE_EXHAUSTED"),
        (UpstreamError("gemini answered 500"), "UNAVAILABLE"),
        (UpstreamError("timeout", status_code=504), "DEADLINE_EXCEEDED"),
    ],
)
def test_each_error_class_in_googles_shape(error: GlasskeyError, status: str):
    body = google_error(error, "req_42")["error"]
    assert body["code"] == error.status_code and body["status"] == status and body["message"] == error.message
    info = next(d for d in body["details"] if d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo")
    assert info["metadata"]["request_id"] == "req_42" and info["metadata"]["source"] == error.source
    assert all(isinstance(value, str) for value in info["metadata"].values())  # a map<string, string>
    kinds = [d["@type"].rsplit(".", 1)[1] for d in body["details"]]
    assert ("BadRequest" in kinds) == bool(error.param)
    assert ("RetryInfo" in kinds) == ("retry-after" in error.headers)


# -- thinking, per route ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "thinking", "kept", "left_out"),
    [
        (
            "gemini",
            {"thinking_budget": 5000, "include_thoughts": True},
            {"thinking_budget": 5000, "include_thoughts": True},
            (),
        ),
        ("gemini", {"thinkingLevel": "LOW"}, None, ()),
        (
            "openai",
            {"includeThoughts": True, "thinkingBudget": 100},
            None,
            ("generationConfig.thinkingConfig.includeThoughts",),
        ),
        ("anthropic", {"includeThoughts": False}, None, ()),
        ("openai_compatible", {"thinkingBudget": 0}, None, ()),
    ],
)
def test_the_thinking_config_is_exact_on_gemini_routes_and_thoughts_are_named_elsewhere(
    provider, thinking, kept, left_out
):
    request = {"contents": [{"parts": [{"text": "hi"}]}], "generation_config": {"thinking_config": thinking}}
    body, names = for_route(GEMINI_ENDPOINT, provider, chat_body("m", request, stream=False))
    assert (body.get("extra_body") or {}).get("google", {}).get("thinking_config") == kept
    assert names == left_out


def test_include_thoughts_must_be_a_boolean():
    request = {
        "contents": [{"parts": [{"text": "hi"}]}],
        "generationConfig": {"thinkingConfig": {"includeThoughts": 1}},
    }
    with pytest.raises(ClientError) as caught:
        chat_body("m", request, stream=False)
    assert caught.value.param == "generationConfig.thinkingConfig.includeThoughts"


def test_reasoning_comes_back_as_a_thought_part_first_whole_and_streamed():
    completion = {
        "id": "chatcmpl-1",
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi.", "reasoning_content": "Hmm."},
                "finish_reason": "stop",
            }
        ],
    }
    parts = generate_response(completion)["candidates"][0]["content"]["parts"]
    assert parts == [{"text": "Hmm.", "thought": True}, {"text": "Hi."}]
    types.GenerateContentResponse.model_validate(generate_response(completion))
    chunk = {"id": "chatcmpl-1", "model": "m", "choices": [{"index": 0, "delta": {"reasoning_content": "Hmm."}}]}
    (event,) = StreamAnswer().feed(sse(chunk))
    assert json.loads(event.removeprefix(b"data: "))["candidates"][0]["content"]["parts"] == [
        {"text": "Hmm.", "thought": True}
    ]
