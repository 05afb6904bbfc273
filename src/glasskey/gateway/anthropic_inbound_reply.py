"""Pure translation of what the lifecycle answers into what an Anthropic Messages client expects.

* ``to_message``: an OpenAI ``chat.completion`` body becomes an Anthropic ``message``.
* ``anthropic_usage``: OpenAI usage becomes Anthropic usage (cache reads and writes apart).
* ``error_body`` / ``error_headers``: a ``GlasskeyError`` in Anthropic's error shape, with
  glasskey's ``request_id`` and ``source`` inside ``error``, and the status the Anthropic SDK maps
  to the right exception class; ``stream_error_body`` does the same for an error met mid-stream.

The reverse direction (Anthropic upstream answers into OpenAI's shape) is
``providers.anthropic_translate``; the tables below are derived from its tables, not copied.
"""

from __future__ import annotations

from typing import Any

import orjson

from glasskey.errors import GlasskeyError
from glasskey.providers.anthropic_translate import ERROR_STATUSES, FINISH_REASONS

# OpenAI finish reason -> Anthropic stop reason: the first Anthropic reason each one came from.
STOP_REASONS: dict[str, str] = {finish: stop for stop, finish in reversed(FINISH_REASONS.items())}
STOP_REASONS["function_call"] = "tool_use"
# HTTP status -> Anthropic error type, the inverse of the provider's table.
ERROR_TYPES: dict[int, str] = {status: error_type for error_type, status in ERROR_STATUSES.items()}


def stop_reason(finish_reason: Any) -> str:
    return STOP_REASONS.get(finish_reason, "end_turn") if isinstance(finish_reason, str) else "end_turn"


def _tokens(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def anthropic_usage(usage: Any) -> dict[str, int]:
    """OpenAI's ``prompt_tokens`` includes cached tokens; Anthropic counts them apart from ``input_tokens``."""
    usage = usage if isinstance(usage, dict) else {}
    details = usage.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    cache_read = _tokens(details.get("cached_tokens"))
    # Only the anthropic provider reports cache writes (as ``cache_write_tokens``), billed as input.
    cache_write = _tokens(details.get("cache_write_tokens"))
    return {
        "input_tokens": max(0, _tokens(usage.get("prompt_tokens")) - cache_read - cache_write),
        "output_tokens": _tokens(usage.get("completion_tokens")),
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": cache_read,
    }


def reasoning_of(delta: dict[str, Any]) -> str:
    """Reasoning text as OpenAI-compatible hosts send it (DeepSeek ``reasoning_content``, others ``reasoning``)."""
    for name in ("reasoning_content", "reasoning"):
        value = delta.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


def tool_input(arguments: Any) -> dict[str, Any]:
    """A tool call's JSON arguments as the ``input`` object; unparseable ones are kept, not lost."""
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str) and arguments else {}
    except orjson.JSONDecodeError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"_raw_arguments": arguments}


def to_message(completion: dict[str, Any], *, message_id: str, model: str) -> dict[str, Any]:
    """The first choice of a ``chat.completion`` as an Anthropic ``message``."""
    choices = completion.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    reply: dict[str, Any] = choice["message"] if isinstance(choice.get("message"), dict) else {}
    content: list[dict[str, Any]] = []
    reasoning = reasoning_of(reply)
    if reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = reply.get("content")
    refusal = reply.get("refusal")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text, "citations": None})
    elif isinstance(refusal, str) and refusal:
        # OpenAI puts a refusal beside an empty content; Anthropic says it as text with stop_reason refusal.
        content.append({"type": "text", "text": refusal, "citations": None})
    for call in reply.get("tool_calls") or ():
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": function.get("name"),
                "input": tool_input(function.get("arguments")),
            }
        )
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "refusal" if refusal and not text else stop_reason(choice.get("finish_reason")),
        "stop_sequence": None,
        "usage": anthropic_usage(completion.get("usage")),
    }


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")


def _error(error_kind: str, message: str, request_id: str, source: Any, details: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {
            "type": error_kind,
            "message": message,
            "request_id": request_id,
            "source": source,
            "details": details,
        },
        "request_id": request_id,
    }


def error_body(error: GlasskeyError, request_id: str) -> dict[str, Any]:
    """Anthropic's ``{"type": "error", "error": {...}}`` with glasskey's facts inside ``error``.

    ``details.error_code`` is where the Anthropic SDK reads a stable code (``APIStatusError.error_code``).
    """
    details = {"error_code": error.code, "param": error.param, **error.details}
    return _error(error_type(error.status_code), error.message, request_id, error.source, details)


def error_headers(error: GlasskeyError, request_id: str) -> dict[str, str]:
    """The error's own headers and retry advice (the Anthropic SDK obeys ``x-should-retry`` as OpenAI's
    does), plus ``request-id``, where the Anthropic SDK reads a request's id."""
    return {**error.headers, "request-id": request_id}


def stream_error_body(in_band: dict[str, Any]) -> dict[str, Any]:
    """The lifecycle's in-band OpenAI-shaped error (a stream broken mid-answer) as an Anthropic ``error`` event."""
    upstream_type = in_band.get("upstream_type")
    upstream_status = in_band.get("upstream_status")
    if isinstance(upstream_type, str) and upstream_type in ERROR_STATUSES:
        kind = upstream_type
    elif isinstance(upstream_status, int):
        kind = error_type(upstream_status)
    else:
        kind = "api_error"
    reserved = ("message", "type", "request_id", "source")
    details = {
        ("error_code" if name == "code" else name): value for name, value in in_band.items() if name not in reserved
    }
    message = str(in_band.get("message") or "the stream broke mid-answer")
    return _error(kind, message, str(in_band.get("request_id") or ""), in_band.get("source"), details)
