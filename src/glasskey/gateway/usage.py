"""Usage read from OpenAI-shaped bodies and chunks, and the gateway's own estimate of streamed text."""

from __future__ import annotations

from typing import Any

import orjson

from glasskey.providers.base import Usage
from glasskey.providers.openai import usage_of


def usage_from_openai(usage: Any) -> Usage | None:
    """OpenAI usage as ``Usage``; None when its prompt or completion count is not a count.

    The one reading of OpenAI usage, the OpenAI provider's (``providers.openai.usage_of``):
    counts are clamped to ``TOKEN_COUNT_MAX``; a string, fraction, boolean or object where a
    count belongs means the upstream reported nothing usable, and the gateway estimates instead.
    """
    return usage_of(usage)


def text_of_delta(delta: Any) -> str:
    """The text a delta (or message) carries, for estimates; anything that is not text counts as none."""
    if not isinstance(delta, dict):
        return ""
    parts = [_text(delta.get("content"))]
    calls = delta.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            parts.append(_text(function.get("name")))
            parts.append(_text(function.get("arguments")))
    return "".join(parts)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def text_of_body(body: dict[str, Any]) -> str:
    """The text of an answer: an OpenAI ``chat.completion``, or an Anthropic ``message`` passed through
    (its text, thinking and tool input)."""
    if isinstance(body.get("content"), list):
        return "".join(
            _text(block.get("text"))
            + _text(block.get("thinking"))
            + (orjson.dumps(block["input"]).decode() if "input" in block else "")
            for block in body["content"]
            if isinstance(block, dict)
        )
    choices = body.get("choices")
    return "".join(
        text_of_delta(choice.get("message"))
        for choice in (choices if isinstance(choices, list) else ())
        if isinstance(choice, dict)
    )


def estimate_tokens(text: str) -> int:
    return -(-len(text.encode()) // 3) if text else 0
