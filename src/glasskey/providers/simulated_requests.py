"""What the simulated upstream accepts and how it calls tools, as OpenAI's chat completions do.

The simulated provider stands in for a real upstream in the demo and the tests, so it must not
be more lenient than one: ``check_chat_body`` refuses what OpenAI refuses (a wrong type, a value
out of range, an unknown argument, a ``tool_choice`` naming no tool) with OpenAI's 400
``invalid_request_error`` and the parameter's name. ``tool_calls_for`` decides, from the request
alone, whether the answer is a tool call: with ``tools`` and a ``tool_choice`` other than
``none``, a turn that does not follow a tool result calls the chosen tool (the first one under
``auto``) with arguments built from its JSON schema; after a tool result the model answers in
text. That makes a full tool round trip reproducible with no model behind it.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from glasskey.providers.base import ProviderError

PROVIDER_NAME = "simulated"

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
STOP_SEQUENCES_MAX = 4
TOP_LOGPROBS_MAX = 20
SERVICE_TIERS = ("auto", "default", "flex", "priority", "scale")
RESPONSE_FORMATS = ("text", "json_object", "json_schema")
# Every argument of OpenAI's chat completions API; anything else is "unrecognized", as there.
KNOWN_ARGUMENTS = frozenset(
    {
        "model", "messages", "temperature", "top_p", "n", "stream", "stream_options", "stop",
        "max_tokens", "max_completion_tokens", "presence_penalty", "frequency_penalty", "logit_bias",
        "logprobs", "top_logprobs", "user", "seed", "tools", "tool_choice", "parallel_tool_calls",
        "response_format", "service_tier", "store", "metadata", "reasoning_effort", "modalities",
        "audio", "prediction", "web_search_options", "functions", "function_call", "verbosity",
        "prompt_cache_key", "safety_identifier",
    }
)  # fmt: skip
# name: (lowest, highest) for the numbers OpenAI bounds.
NUMBER_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
}
INTEGER_MINIMUMS = {"n": 1, "max_tokens": 1, "max_completion_tokens": 1, "top_logprobs": 0}
BOOLEANS = ("stream", "logprobs", "parallel_tool_calls", "store")


def refused(message: str, param: str | None = None) -> ProviderError:
    """OpenAI's answer to a bad request: 400 ``invalid_request_error`` naming the parameter."""
    where = f" (param: {param})" if param else ""
    return ProviderError(PROVIDER_NAME, 400, message + where, error_type="invalid_request_error")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_scalars(body: dict[str, Any]) -> None:
    for name, (lowest, highest) in NUMBER_RANGES.items():
        value = body.get(name)
        if value is None:
            continue
        if not _is_number(value):
            raise refused(f"Invalid type for '{name}': expected a decimal, but got {type(value).__name__}", name)
        if not lowest <= value <= highest:
            raise refused(f"Invalid value for '{name}': must be from {lowest:g} to {highest:g}", name)
    for name, minimum in INTEGER_MINIMUMS.items():
        value = body.get(name)
        if value is None:
            continue
        if not _is_integer(value):
            raise refused(f"Invalid type for '{name}': expected an integer, but got {type(value).__name__}", name)
        if value < minimum:
            raise refused(f"Invalid value for '{name}': must be at least {minimum}", name)
    if body.get("top_logprobs") is not None and (body["top_logprobs"] > TOP_LOGPROBS_MAX or not body.get("logprobs")):
        raise refused(f"'top_logprobs' must be at most {TOP_LOGPROBS_MAX} and needs 'logprobs': true", "top_logprobs")
    for name in BOOLEANS:
        if body.get(name) is not None and not isinstance(body[name], bool):
            raise refused(f"Invalid type for '{name}': expected a boolean", name)
    if body.get("seed") is not None and not _is_integer(body["seed"]):
        raise refused("Invalid type for 'seed': expected an integer", "seed")
    if body.get("user") is not None and not isinstance(body["user"], str):
        raise refused("Invalid type for 'user': expected a string", "user")
    tier = body.get("service_tier")
    if tier is not None and tier not in SERVICE_TIERS:
        raise refused(f"Invalid value for 'service_tier': must be one of {', '.join(SERVICE_TIERS)}", "service_tier")
    stop = body.get("stop")
    stop_ok = isinstance(stop, list) and len(stop) <= STOP_SEQUENCES_MAX and all(isinstance(x, str) for x in stop)
    if stop is not None and not isinstance(stop, str) and not stop_ok:
        raise refused(f"'stop' must be a string or at most {STOP_SEQUENCES_MAX} strings", "stop")
    response_format = body.get("response_format")
    if response_format is not None and (
        not isinstance(response_format, dict) or response_format.get("type") not in RESPONSE_FORMATS
    ):
        raise refused(f"'response_format.type' must be one of {', '.join(RESPONSE_FORMATS)}", "response_format")


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise refused("'messages' must be a non-empty array", "messages")
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise refused(f"'{where}.role' must be one of {', '.join(ROLES)}", where)
        if message["role"] == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise refused(f"'{where}.tool_call_id' is required for a tool message", where)


def _tool_names(tools: Any) -> list[str]:
    if not isinstance(tools, list):
        raise refused("'tools' must be an array", "tools")
    names = []
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
            raise refused(f'\'tools[{index}]\' must be {{"type": "function", "function": {{...}}}}', "tools")
        name = function.get("name")
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            raise refused(f"'tools[{index}].function.name' must match {TOOL_NAME.pattern}", "tools")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise refused(f"'tools[{index}].function.parameters' must be a JSON schema object", "tools")
        names.append(name)
    return names


def _check_tool_choice(choice: Any, names: list[str]) -> None:
    if choice is None:
        return
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise refused("'tool_choice' must be none, auto, required or a named function", "tool_choice")
        if choice != "none" and not names:
            raise refused("'tool_choice' is only allowed when 'tools' are specified", "tool_choice")
        return
    function = choice.get("function") if isinstance(choice, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or name not in names:
        raise refused("'tool_choice' names a function that is not in 'tools'", "tool_choice")


def check_chat_body(body: dict[str, Any]) -> None:
    """Refuse, as OpenAI would, a chat body with a wrong or unknown argument (``ProviderError`` 400)."""
    unknown = sorted(set(body) - KNOWN_ARGUMENTS)
    if unknown:
        raise refused(f"Unrecognized request argument supplied: {unknown[0]}", unknown[0])
    _check_messages(body.get("messages"))
    _check_scalars(body)
    names = _tool_names(body["tools"]) if body.get("tools") is not None else []
    _check_tool_choice(body.get("tool_choice"), names)


def _value_for(schema: Any, name: str) -> Any:
    """A plausible value of a JSON schema: its first enum value, else one of its type."""
    if not isinstance(schema, dict):
        return name
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    if kind == "array":
        return [_value_for(schema.get("items"), name)]
    if kind == "object":
        return _arguments(schema)
    return f"{name} example"


def _arguments(schema: Any) -> dict[str, Any]:
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
        return {}
    properties: dict[str, Any] = schema["properties"]
    required = schema.get("required")
    wanted = [p for p in required if p in properties] if isinstance(required, list) else list(properties)
    return {name: _value_for(properties[name], name) for name in wanted}


def tool_calls_for(body: dict[str, Any], choice_index: int) -> list[dict[str, Any]] | None:
    """The tool calls of the answer, or None when the model answers in text (see the module doc)."""
    tools = body.get("tools") or []
    choice = body.get("tool_choice", "auto")
    messages = body.get("messages") or []
    if not tools or choice == "none" or (messages and messages[-1].get("role") == "tool"):
        return None
    functions = {tool["function"]["name"]: tool["function"] for tool in tools}
    name = choice["function"]["name"] if isinstance(choice, dict) else next(iter(functions))
    arguments = json.dumps(_arguments(functions[name].get("parameters")), separators=(",", ":"))
    digest = hashlib.sha256(f"{name}\0{arguments}\0{len(messages)}\0{choice_index}".encode()).hexdigest()
    return [{"id": f"call_sim_{digest[:24]}", "type": "function", "function": {"name": name, "arguments": arguments}}]
