"""Parsing and checking client request bodies, once, before anything else runs.

Bodies are parsed with orjson into plain dicts; only the fields the gateway acts on are
checked. Fields that would let a client pick the upstream (``api_base``, ``base_url`` ...) are
refused: only operators choose where requests go.
"""

from __future__ import annotations

from typing import Any

import orjson

from glasskey.errors import ClientError

FORBIDDEN_FIELDS = ("api_base", "base_url", "api_key", "api_version", "custom_llm_provider", "upstream_url")
MAX_CHOICES = 8


def parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ClientError("The request body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise ClientError("The request body must be a JSON object", code="invalid_json")
    for name in FORBIDDEN_FIELDS:
        if name in body:
            raise ClientError(f"`{name}` is not accepted: upstreams are chosen by the gateway's operator", param=name)
    return body


def _positive_int(body: dict[str, Any], name: str, *, maximum: int | None = None) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ClientError(f"`{name}` must be a positive integer", param=name)
    if maximum is not None and value > maximum:
        raise ClientError(f"`{name}` must be at most {maximum}", param=name)


def check_model_field(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ClientError("`model` is required and must be a string", param="model", code="missing_model")
    return model


def check_chat_body(body: dict[str, Any]) -> None:
    check_model_field(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ClientError("`messages` must be a non-empty array", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ClientError(f"`messages[{index}]` must be an object with a `role`", param=f"messages[{index}]")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise ClientError("`stream` must be a boolean", param="stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise ClientError("`stream_options` must be an object", param="stream_options")
    _positive_int(body, "max_tokens")
    _positive_int(body, "max_completion_tokens")
    _positive_int(body, "n", maximum=MAX_CHOICES)


def check_embeddings_body(body: dict[str, Any]) -> None:
    check_model_field(body)
    value = body.get("input")
    if isinstance(value, str) and value:
        return
    if isinstance(value, list) and value:
        return
    raise ClientError("`input` must be a non-empty string or array", param="input")
