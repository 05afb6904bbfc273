"""Usage read from OpenAI-shaped bodies and chunks, and the gateway's own estimate of streamed text."""

from __future__ import annotations

from typing import Any

from glasskey.providers.base import Usage


def usage_from_openai(usage: dict[str, Any]) -> Usage:
    details = usage.get("prompt_tokens_details") or {}
    return Usage(
        input_tokens=int(usage.get("prompt_tokens") or 0),
        output_tokens=int(usage.get("completion_tokens") or 0),
        cached_tokens=int(details.get("cached_tokens") or 0),
    )


def text_of_delta(delta: dict[str, Any]) -> str:
    parts = [delta.get("content") or ""]
    for call in delta.get("tool_calls") or ():
        function = call.get("function") or {}
        parts.append(function.get("name") or "")
        parts.append(function.get("arguments") or "")
    return "".join(parts)


def text_of_body(body: dict[str, Any]) -> str:
    return "".join(text_of_delta(choice.get("message") or {}) for choice in body.get("choices") or ())


def estimate_tokens(text: str) -> int:
    return -(-len(text.encode()) // 3) if text else 0
