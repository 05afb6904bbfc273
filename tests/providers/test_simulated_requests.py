"""The simulated upstream refuses what OpenAI refuses and answers tool calls, through the official SDK."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from openai import OpenAI

from gateway_fixtures import gateway
from glasskey.providers.base import ProviderError
from glasskey.providers.simulated_requests import check_chat_body, tool_calls_for

WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city", "unit"],
        },
    },
}
__all__ = ["gateway"]
ASK: Any = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": True}, "top_p"),
        ({"n": 0}, "n"),
        ({"max_tokens": "10"}, "max_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools"),
        ({"temprature": 1}, "temprature"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0]"),
        ({"service_tier": "gold"}, "service_tier"),
    ],
)
def test_a_request_openai_would_refuse_is_refused_naming_the_parameter(change: dict[str, Any], param: str) -> None:
    with pytest.raises(ProviderError) as refused:
        check_chat_body({"model": "m", "messages": ASK, **change})
    assert refused.value.status == 400
    assert refused.value.error_type == "invalid_request_error"
    assert f"(param: {param})" in refused.value.message


def test_a_tool_is_called_until_its_result_comes_back() -> None:
    body: dict[str, Any] = {"model": "m", "messages": ASK, "tools": [WEATHER], "tool_choice": "required"}
    check_chat_body(body)
    calls = tool_calls_for(body, 0)
    assert calls is not None
    assert calls[0]["function"]["name"] == "get_weather"
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "city example", "unit": "c"}
    answered = [
        *ASK,
        {"role": "assistant", "tool_calls": calls},
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "18C"},
    ]
    assert tool_calls_for({**body, "messages": answered}, 0) is None
    assert tool_calls_for({**body, "tool_choice": "none"}, 0) is None


def test_the_sdk_makes_a_tool_round_trip_streamed_and_not(gateway) -> None:
    sdk = OpenAI(base_url=gateway.v1, api_key=gateway.routed_key, max_retries=0)
    first = sdk.chat.completions.create(model="gpt-4o-mini", messages=ASK, tools=[WEATHER], tool_choice="required")
    assert first.choices[0].finish_reason == "tool_calls"
    calls = first.choices[0].message.tool_calls
    assert calls is not None and calls[0].type == "function"
    call = calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments)["city"]
    streamed = list(sdk.chat.completions.create(model="claude-sonnet-4-5", messages=ASK, tools=[WEATHER], stream=True))
    pieces = [
        c.choices[0].delta.tool_calls[0].function for c in streamed if c.choices and c.choices[0].delta.tool_calls
    ]
    assert pieces and pieces[0] is not None and pieces[0].name == "get_weather"
    assert "".join((p.arguments or "") if p else "" for p in pieces) == call.function.arguments
    assert [c.choices[0].finish_reason for c in streamed if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    result: Any = {"role": "tool", "tool_call_id": call.id, "content": "18 degrees"}
    answered: Any = first.choices[0].message.model_dump(exclude_none=True)
    second = sdk.chat.completions.create(
        model="gpt-4o-mini",
        messages=[*ASK, answered, result],
        tools=[WEATHER],
    )
    assert second.choices[0].finish_reason == "stop" and second.choices[0].message.content
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model="gpt-4o-mini", messages=ASK, temperature="hot")  # type: ignore[call-overload]
    assert "temperature" in str(refused.value)
    gateway.audit_ok()
