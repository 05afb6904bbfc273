"""Token estimates made before a request runs, without a tokenizer (none may be downloaded).

Two numbers per request: an **estimate** (about four characters a token, plus OpenAI's
per-message framing) for quotes, and an **upper bound** for holds. The bound counts one token
per UTF-8 byte of every text the model will read: byte-level BPE never emits a token for less
than a byte, so the bound cannot be beaten by a real tokenizer, and a hold built on it covers
the real charge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

TOKENS_PER_MESSAGE = 4
TOKENS_PER_REQUEST = 3
IMAGE_TOKENS_ESTIMATE = 765  # a 1024x1024 image at high detail on GPT-4o-class models
IMAGE_TOKENS_MAX = 1600  # the largest per-image charge among the catalog's vendors
ESTIMATED_OUTPUT_TOKENS = 256  # a typical answer, for quotes only; holds use the maximum
# Vendors add a hidden system prompt when tools are offered (Anthropic documents ~350 tokens).
TOOLS_OVERHEAD_TOKENS = 600


@dataclass(frozen=True)
class InputTokens:
    estimate: int
    upper_bound: int


def _texts_and_images(content: Any) -> tuple[list[str], int]:
    if content is None:
        return [], 0
    if isinstance(content, str):
        return [content], 0
    texts: list[str] = []
    images = 0
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                texts.append(str(part))
            elif part.get("type") == "image_url":
                images += 1
            elif isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                texts.append(orjson.dumps(part).decode())
        return texts, images
    return [orjson.dumps(content).decode()], 0


def _bounds(texts: list[str], images: int, messages: int) -> InputTokens:
    chars = sum(len(t) for t in texts)
    byte_count = sum(len(t.encode()) for t in texts)
    framing = TOKENS_PER_MESSAGE * messages + TOKENS_PER_REQUEST
    return InputTokens(
        estimate=-(-chars // 4) + framing + images * IMAGE_TOKENS_ESTIMATE,
        upper_bound=byte_count + framing + images * IMAGE_TOKENS_MAX,
    )


def chat_input_tokens(body: dict[str, Any]) -> InputTokens:
    texts: list[str] = []
    images = 0
    messages = body.get("messages") or []
    for message in messages:
        if not isinstance(message, dict):
            continue
        part_texts, part_images = _texts_and_images(message.get("content"))
        texts.extend(part_texts)
        images += part_images
        for extra in ("name", "tool_calls", "function_call"):
            if message.get(extra) is not None:
                value = message[extra]
                texts.append(value if isinstance(value, str) else orjson.dumps(value).decode())
    for extra in ("tools", "functions", "response_format"):
        if body.get(extra) is not None:
            texts.append(orjson.dumps(body[extra]).decode())
    bounds = _bounds(texts, images, len(messages))
    if body.get("tools") or body.get("functions"):
        return InputTokens(bounds.estimate + TOOLS_OVERHEAD_TOKENS, bounds.upper_bound + TOOLS_OVERHEAD_TOKENS)
    return bounds


def embedding_input_tokens(body: dict[str, Any]) -> InputTokens:
    raw = body.get("input")
    items = raw if isinstance(raw, list) else [raw]
    texts = [item if isinstance(item, str) else orjson.dumps(item).decode() for item in items]
    # Token-id arrays are exact: each id is one token.
    exact = sum(len(item) for item in items if isinstance(item, list))
    counted = _bounds([t for t, item in zip(texts, items, strict=True) if not isinstance(item, list)], 0, 0)
    return InputTokens(counted.estimate + exact, counted.upper_bound + exact)


def max_output_tokens(body: dict[str, Any], model_max_output_tokens: int) -> int:
    """The most the request may generate: its own cap (or the model's), times ``n`` choices."""
    requested = body.get("max_completion_tokens") or body.get("max_tokens")
    cap = min(int(requested), model_max_output_tokens) if requested else model_max_output_tokens
    return cap * int(body.get("n") or 1)
