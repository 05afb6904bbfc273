"""Pure translation between OpenAI chat completions and Anthropic's Messages API.

Three directions, no I/O:

* ``to_messages_request``: an OpenAI chat body becomes a Messages body. What Anthropic cannot
  honour raises ``ClientError`` naming the parameter, before anything is sent; nothing is
  silently dropped.
* ``from_message``: a Messages answer becomes a ``chat.completion`` body and its ``Usage``.
* ``StreamTranslator``: Messages stream events become ``chat.completion.chunk`` dicts, one event
  at a time, so the gateway can forward each piece as it arrives.

Usage: OpenAI's ``prompt_tokens`` includes cached tokens, so it is Anthropic's
``input_tokens + cache_read_input_tokens + cache_creation_input_tokens``; cache reads are
``cached_tokens`` (billed at the cached price) and cache writes are billed as plain input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from glasskey.errors import ClientError, shown
from glasskey.providers.base import StreamCut, Usage, token_count

PROVIDER_NAME = "anthropic"
API_VERSION = "2023-06-01"
# The API version that removed the sampling parameters (temperature, top_p, top_k).
API_VERSION_WITHOUT_SAMPLING = "2026-10-21"
DEFAULT_MAX_TOKENS = 4096
MAX_TEMPERATURE = 1.0
IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")

FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# The HTTP status each Anthropic error type is sent with, for errors that arrive inside a stream.
ERROR_STATUSES: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

# Parameters Anthropic has no equivalent for; each is refused unless it holds OpenAI's no-op default.
_REFUSED: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "n": ("Anthropic returns exactly one choice per request", lambda v: v == 1),
    "logprobs": ("Anthropic does not return log probabilities", lambda v: v is False),
    "top_logprobs": ("Anthropic does not return log probabilities", lambda v: v == 0),
    "presence_penalty": ("Anthropic has no repetition penalties", lambda v: v == 0),
    "frequency_penalty": ("Anthropic has no repetition penalties", lambda v: v == 0),
    "seed": ("Anthropic has no sampling seed", lambda v: False),
    "logit_bias": ("Anthropic cannot bias tokens", lambda v: v == {}),
    "store": ("completions are not stored by Anthropic", lambda v: v is False),
    "modalities": ("Anthropic answers in text only", lambda v: v == ["text"]),
    "service_tier": ("Anthropic's service tiers differ from OpenAI's", lambda v: v in ("auto", "default")),
}
# Best-effort and informational parameters (the OpenAI spec promises nothing from them) that
# Anthropic cannot honour, each with the value that is a no-op: ``providers.best_effort`` leaves
# them out of the request and lists them on the receipt, instead of the 400 below, unless the key
# or route asks for ``strict_params``. ``user`` and ``safety_identifier`` are mapped, not dropped.
BEST_EFFORT_NO_OPS: dict[str, Callable[[Any], bool]] = {
    "seed": lambda v: False,
    "service_tier": lambda v: v in ("auto", "default"),
    "store": lambda v: v is False,
    "metadata": lambda v: False,  # Anthropic's metadata holds only user_id: even {} is not passed on
    "prompt_cache_key": lambda v: False,
}


def unhonoured_best_effort(body: dict[str, Any]) -> list[str]:
    """The best-effort parameters of ``body`` this provider would not honour (see BEST_EFFORT_NO_OPS)."""
    return [name for name, no_op in BEST_EFFORT_NO_OPS.items() if body.get(name) is not None and not no_op(body[name])]


# Parameters translated below, or owned by the gateway.
_HANDLED = frozenset(
    {
        "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "temperature",
        "top_p", "stop", "tools", "tool_choice", "parallel_tool_calls", "response_format", "user",
        "safety_identifier",
    }
)  # fmt: skip


def refuse(param: str, why: str) -> ClientError:
    return ClientError(f"`{param}` is not supported by the {PROVIDER_NAME} provider: {why}", param=param)


# -- request ------------------------------------------------------------------------------


def to_messages_request(
    body: dict[str, Any],
    upstream_model: str,
    *,
    default_max_tokens: int = DEFAULT_MAX_TOKENS,
    api_version: str = API_VERSION,
) -> dict[str, Any]:
    """The Messages body for an OpenAI chat body (``stream`` is left to the caller)."""
    present = {name: value for name, value in body.items() if value is not None}
    for name, value in present.items():
        if name in _REFUSED:
            why, is_default = _REFUSED[name]
            if not is_default(value):
                raise refuse(name, why)
        elif name not in _HANDLED:
            raise refuse(name, "Anthropic's Messages API has no such parameter")

    system, messages = _conversation(present.get("messages"))
    request: dict[str, Any] = {
        "model": upstream_model,
        "messages": messages,
        "max_tokens": int(present.get("max_completion_tokens") or present.get("max_tokens") or default_max_tokens),
    }
    if system:
        request["system"] = system[0]["text"] if len(system) == 1 else system
    for name in ("temperature", "top_p"):
        if name in present:
            request[name] = _sampling(name, present[name], api_version)
    stop = present.get("stop")
    if stop is not None:
        request["stop_sequences"] = [stop] if isinstance(stop, str) else _strings(stop, "stop")
    tools = _tools(present.get("tools"))
    if tools:
        request["tools"] = tools
    tool_choice = _tool_choice(present.get("tool_choice"), bool(tools), present.get("parallel_tool_calls"))
    if tool_choice is not None:
        request["tool_choice"] = tool_choice
    output_format = _output_format(present.get("response_format"))
    if output_format is not None:
        request["output_config"] = {"format": output_format}
    user = present.get("safety_identifier", present.get("user"))
    if user is not None:
        if not isinstance(user, str):
            raise ClientError("`user` must be a string", param="user")
        request["metadata"] = {"user_id": user}
    return request


def _sampling(name: str, value: Any, api_version: str) -> float:
    if api_version >= API_VERSION_WITHOUT_SAMPLING:
        raise refuse(name, f"Anthropic API version {api_version} has no sampling parameters")
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ClientError(f"`{name}` must be a non-negative number", param=name)
    if value > MAX_TEMPERATURE:
        raise refuse(name, f"Anthropic accepts 0 to 1, not {value}")
    return float(value)


def _strings(value: Any, param: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ClientError(f"`{param}` must be a string or an array of strings", param=param)
    return list(value)


def _conversation(raw: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """System text blocks, and the messages with alternating roles that Anthropic requires."""
    if not isinstance(raw, list):
        raise ClientError("`messages` must be an array", param="messages")
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []

    def append(role: str, blocks: list[dict[str, Any]]) -> None:
        # An empty turn carries nothing, and Anthropic refuses empty content.
        if not blocks:
            return
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})

    for index, message in enumerate(raw):
        where = f"messages[{index}]"
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_text_blocks(message.get("content"), f"{where}.content"))
        elif role == "user":
            append("user", _user_blocks(message.get("content"), f"{where}.content"))
        elif role == "assistant":
            append("assistant", _assistant_blocks(message, where))
        elif role == "tool":
            append("user", [_tool_result(message, where)])
        else:
            raise refuse(f"{where}.role", f"the role {shown(role)!r} has no Anthropic equivalent; use tools")
    for message in messages:
        # Anthropic wants a user turn's tool results before anything else in it.
        if message["role"] == "user":
            message["content"].sort(key=lambda block: block["type"] != "tool_result")
    if not messages:
        raise ClientError(
            f"`messages` needs at least one user or assistant message for the {PROVIDER_NAME} provider",
            param="messages",
        )
    return system, messages


def _text_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise ClientError(f"`{where}` must be a string or an array of parts", param=where)
    return [block for index, part in enumerate(content) for block in _text_part(part, f"{where}[{index}]")]


def _text_part(part: Any, where: str) -> list[dict[str, Any]]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind not in ("text", "refusal") or not isinstance(part.get(kind), str):
        raise refuse(where, f"only text parts are accepted here, not {shown(kind)!r}")
    return [{"type": "text", "text": part[kind]}] if part[kind] else []


def _user_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        return _text_blocks(content, where)
    blocks: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "image_url":
            blocks.append(_image(part.get("image_url"), f"{where}[{index}].image_url"))
        elif kind == "file":
            blocks.append(_document(part.get("file"), f"{where}[{index}].file"))
        else:
            blocks.extend(_text_part(part, f"{where}[{index}]"))
    return blocks


def _image(image: Any, where: str) -> dict[str, Any]:
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise ClientError(f"`{where}.url` must be a string", param=f"{where}.url")
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    media_type, data = _data_url(url, f"{where}.url")
    media_type = "image/jpeg" if media_type == "image/jpg" else media_type
    if media_type not in IMAGE_MEDIA_TYPES:
        raise refuse(f"{where}.url", f"images must be {', '.join(IMAGE_MEDIA_TYPES)}, not {shown(media_type)}")
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _document(file: Any, where: str) -> dict[str, Any]:
    data_url = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(data_url, str):
        raise refuse(where, "files must be sent inline as `file_data` (uploaded file ids live at OpenAI)")
    media_type, data = _data_url(data_url, f"{where}.file_data")
    if media_type != "application/pdf":
        raise refuse(f"{where}.file_data", f"inline files must be PDF, not {shown(media_type)}")
    return {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _data_url(url: str, where: str) -> tuple[str, str]:
    """``data:<media type>;base64,<data>`` split into its media type and data."""
    header, comma, data = url.removeprefix("data:").partition(",")
    params = header.split(";")
    if not url.startswith("data:") or not comma or "base64" not in params[1:]:
        raise refuse(where, "only https URLs and base64 data URLs can be sent")
    return params[0].strip().lower(), data


def _assistant_blocks(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    if message.get("function_call") is not None:
        raise refuse(f"{where}.function_call", "the legacy function_call field has no equivalent; use tool_calls")
    blocks = _text_blocks(message.get("content"), f"{where}.content")
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise ClientError(f"`{where}.tool_calls` must be an array", param=f"{where}.tool_calls")
    for index, call in enumerate(calls):
        call_where = f"{where}.tool_calls[{index}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or call.get("type", "function") != "function":
            raise refuse(call_where, "only function tool calls can be sent")
        arguments = function.get("arguments") or "{}"
        try:
            parsed = orjson.loads(arguments) if isinstance(arguments, str) else None
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            param = f"{call_where}.function.arguments"
            raise ClientError(f"`{param}` must be a JSON object for the {PROVIDER_NAME} provider", param=param)
        blocks.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": parsed})
    return blocks


def _tool_result(message: dict[str, Any], where: str) -> dict[str, Any]:
    tool_call_id = message.get("tool_call_id")
    if not isinstance(tool_call_id, str) or not tool_call_id:
        raise ClientError(f"`{where}.tool_call_id` is required", param=f"{where}.tool_call_id")
    content = message.get("content")
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_call_id}
    if isinstance(content, list):
        result["content"] = _text_blocks(content, f"{where}.content")
    else:
        result["content"] = content if isinstance(content, str) else ""
    return result


def _tools(raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ClientError("`tools` must be an array", param="tools")
    tools: list[dict[str, Any]] = []
    for index, tool in enumerate(raw):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or tool.get("type") != "function":
            raise refuse(f"tools[{index}]", "only function tools can be sent")
        translated: dict[str, Any] = {
            "name": function.get("name"),
            "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
        }
        if isinstance(function.get("description"), str):
            translated["description"] = function["description"]
        if isinstance(function.get("strict"), bool):
            translated["strict"] = function["strict"]
        tools.append(translated)
    return tools


def _tool_choice(choice: Any, has_tools: bool, parallel: Any) -> dict[str, Any] | None:
    if choice is None or choice == "auto":
        translated: dict[str, Any] | None = {"type": "auto"} if has_tools and parallel is False else None
    elif choice == "none":
        # Without tools there is nothing to forbid, and Anthropic wants tools beside a tool_choice.
        return {"type": "none"} if has_tools else None
    elif choice == "required":
        translated = {"type": "any"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        translated = {"type": "tool", "name": name}
    else:
        raise refuse("tool_choice", f"{choice!r} has no Anthropic equivalent")
    if translated is None:
        return None
    if not has_tools:
        raise ClientError("`tool_choice` needs `tools`", param="tool_choice")
    if parallel is False:
        translated["disable_parallel_tool_use"] = True
    return translated


def _output_format(response_format: Any) -> dict[str, Any] | None:
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if response_format is None or kind == "text":
        return None
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise ClientError("`response_format.json_schema.schema` is required", param="response_format")
        return {"type": "json_schema", "schema": schema}
    raise refuse("response_format", f"{shown(kind)!r} has no Anthropic equivalent; send a json_schema")


# -- response -----------------------------------------------------------------------------


def _count(value: Any) -> int:
    """A token count as reported, within ``TOKEN_COUNT_MAX``; a missing or malformed one counts as 0
    (negatives pass through, for the gateway to flag)."""
    return token_count(value) or 0


def usage_to_openai(usage: dict[str, Any]) -> tuple[dict[str, Any], Usage]:
    """Anthropic usage as OpenAI usage (cache writes under ``prompt_tokens_details``) and ``Usage``."""
    cache_read = _count(usage.get("cache_read_input_tokens"))
    cache_write = _count(usage.get("cache_creation_input_tokens"))
    prompt = _count(usage.get("input_tokens")) + cache_read + cache_write
    completion = _count(usage.get("output_tokens"))
    details = usage.get("output_tokens_details")
    thinking = _count(details.get("thinking_tokens")) if isinstance(details, dict) else 0
    openai_usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cache_read, "cache_write_tokens": cache_write},
        "completion_tokens_details": {"reasoning_tokens": thinking},
    }
    return openai_usage, Usage(input_tokens=prompt, output_tokens=completion, cached_tokens=cache_read)


def finish_reason(stop_reason: Any) -> str:
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def _arguments(tool_input: Any) -> str:
    return orjson.dumps(tool_input if tool_input is not None else {}).decode()


def from_message(message: dict[str, Any], created: int) -> tuple[dict[str, Any], Usage | None]:
    """A Messages answer as an OpenAI ``chat.completion`` body, and its usage."""
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in message.get("content") or ():
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            texts.append(str(block.get("text") or ""))
        elif block.get("type") == "tool_use":
            function = {"name": block.get("name"), "arguments": _arguments(block.get("input"))}
            tool_calls.append({"id": block.get("id"), "type": "function", "function": function})
    reply: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not tool_calls else None,
        "refusal": None,
    }
    if tool_calls:
        reply["tool_calls"] = tool_calls
    body: dict[str, Any] = {
        "id": message.get("id"),
        "object": "chat.completion",
        "created": created,
        "model": message.get("model"),
        "choices": [
            {
                "index": 0,
                "message": reply,
                "logprobs": None,
                "finish_reason": finish_reason(message.get("stop_reason")),
            }
        ],
    }
    raw_usage = message.get("usage")
    if not isinstance(raw_usage, dict):
        return body, None
    body["usage"], usage = usage_to_openai(raw_usage)
    return body, usage


@dataclass(frozen=True)
class NativeEvent:
    """One event of a Messages stream: its SSE name and raw data as they came, and the data parsed."""

    name: str
    data: str
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        kind = self.body.get("type")
        return kind if isinstance(kind, str) and kind else self.name


def read_event(name: str, data: str) -> NativeEvent:
    """An upstream stream event read; an ``error`` event (the upstream failed mid-stream) or data that is
    not a JSON object raises ``StreamCut``."""
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise StreamCut(PROVIDER_NAME, 502, f"the upstream sent an invalid {name} event") from None
    if not isinstance(event, dict):
        raise StreamCut(PROVIDER_NAME, 502, f"the upstream sent an invalid {name} event")
    native = NativeEvent(name, data, event)
    if native.kind == "error":
        error: dict[str, Any] = event["error"] if isinstance(event.get("error"), dict) else {}
        error_type = str(error.get("type") or "api_error")
        message = str(error.get("message") or "the upstream reported an error mid-stream")
        raise StreamCut(PROVIDER_NAME, ERROR_STATUSES.get(error_type, 502), message, error_type=error_type)
    return native


class StreamTranslator:
    """Turns Messages stream events into OpenAI chunks, one event at a time.

    ``stopped`` turns true at ``message_stop``; a stream that ends before it was cut. Usage is
    gathered from ``message_start`` and updated by each ``message_delta`` (whose counts are
    cumulative), and sent in a final chunk with empty ``choices`` at ``message_stop``.
    """

    def __init__(self, created: int, model: str) -> None:
        self.created = created
        self.id = ""
        self.model = model
        self.usage: dict[str, Any] = {}
        self.stopped = False
        self._tool_calls: dict[int, int] = {}  # Anthropic block index -> OpenAI tool call index

    def feed(self, name: str, data: str) -> list[dict[str, Any]]:
        """The chunks for one SSE event (``name`` and raw ``data``)."""
        return self.take(read_event(name, data))

    def take(self, native: NativeEvent) -> list[dict[str, Any]]:
        """The chunks for one event already read (``read_event``)."""
        kind, event = native.kind, native.body
        if kind == "message_start":
            return self._start(event.get("message") or {})
        if kind == "content_block_start":
            return self._block_start(event.get("index"), event.get("content_block") or {})
        if kind == "content_block_delta":
            return self._block_delta(event.get("index"), event.get("delta") or {})
        if kind == "message_delta":
            self._update_usage(event.get("usage"))
            reason = finish_reason((event.get("delta") or {}).get("stop_reason"))
            return [self._chunk({}, reason)]
        if kind == "message_stop":
            self.stopped = True
            openai_usage, _ = usage_to_openai(self.usage)
            return [self._envelope([], usage=openai_usage)] if self.usage else []
        # ping, content_block_stop, and event types added later carry nothing for the client.
        return []

    def final_usage(self) -> Usage | None:
        return usage_to_openai(self.usage)[1] if self.usage else None

    def _start(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        self.id = str(message.get("id") or "")
        self.model = str(message.get("model") or self.model)
        self._update_usage(message.get("usage"))
        return [self._chunk({"role": "assistant", "content": ""})]

    def _block_start(self, index: Any, block: dict[str, Any]) -> list[dict[str, Any]]:
        if block.get("type") == "text":
            return [self._chunk({"content": block["text"]})] if block.get("text") else []
        if block.get("type") != "tool_use" or not isinstance(index, int):
            return []
        position = self._tool_calls.setdefault(index, len(self._tool_calls))
        # Streams carry the input in deltas; a start block with its input already set carries it here.
        arguments = _arguments(block["input"]) if block.get("input") else ""
        call = {
            "index": position,
            "id": block.get("id"),
            "type": "function",
            "function": {"name": block.get("name"), "arguments": arguments},
        }
        return [self._chunk({"tool_calls": [call]})]

    def _block_delta(self, index: Any, delta: dict[str, Any]) -> list[dict[str, Any]]:
        if delta.get("type") == "text_delta" and delta.get("text"):
            return [self._chunk({"content": delta["text"]})]
        if delta.get("type") == "input_json_delta" and delta.get("partial_json") and index in self._tool_calls:
            call = {"index": self._tool_calls[index], "function": {"arguments": delta["partial_json"]}}
            return [self._chunk({"tool_calls": [call]})]
        return []

    def _update_usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self.usage.update({key: value for key, value in usage.items() if value is not None})

    def _chunk(self, delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
        return self._envelope([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}])

    def _envelope(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            **extra,
        }
