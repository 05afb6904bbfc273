"""Pure translation of an inbound Anthropic Messages request into the OpenAI chat body the lifecycle serves.

``to_chat_body`` takes the parsed ``POST /v1/messages`` body and returns the OpenAI chat body that
goes through the same lifecycle (quote, hold, routes, fallback, receipt) as ``/v1/chat/completions``.
It is the inverse of ``providers.anthropic_translate.to_messages_request``: what the OpenAI shape
cannot carry either is dropped when it only tunes delivery (``cache_control``, thinking signatures,
``is_error``; documented in docs/providers.md) or refused with a ``ClientError`` naming the
parameter when dropping it would change the answer (``top_k``, server tools, ...). No I/O.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from glasskey.errors import ClientError
from glasskey.gateway.inbound_thinking import google_thinking
from glasskey.providers.anthropic_translate import IMAGE_MEDIA_TYPES

INBOUND_API = "the Anthropic Messages API"
# ``anthropic-version`` is a date; any published one is accepted, a malformed one is refused.
VERSION_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# ``output_config.effort`` values accepted (carried per route, like ``thinking``: ``gateway.inbound_thinking``).
EFFORTS = ("low", "medium", "high", "max")
# Anthropic's effort as OpenAI's ``reasoning_effort``, which the gemini provider turns into a
# thinking budget; ``max`` is Gemini's largest level.
_GEMINI_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "max": "high"}

# Parameters whose only effect is on Anthropic's own delivery (caching, routing inside Anthropic):
# the OpenAI shape has no place for them, and the answer is the same without them.
_DROPPED = frozenset({"cache_control", "service_tier", "inference_geo", "speed", "diagnostics"})
# Parameters that would change the answer and that no OpenAI-shaped route can honour.
_REFUSED: dict[str, str] = {
    "top_k": "OpenAI-shaped routes have no top-k sampling",
    "container": "containers run at Anthropic only",
    "mcp_servers": "MCP servers are called by Anthropic itself",
}
_HANDLED = frozenset(
    {
        "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream", "temperature", "top_p",
        "tools", "tool_choice", "thinking", "output_config", "context_management",
    }
)  # fmt: skip


class Untranslatable(ClientError):
    """A request the OpenAI shape cannot carry: refused for translated routes only, an Anthropic
    route serves it as it is (``gateway.anthropic_passthrough``)."""


def unsupported(param: str, why: str) -> Untranslatable:
    return Untranslatable(f"`{param}` cannot be served through {INBOUND_API} here: {why}", param=param)


def check_version(version: str | None) -> None:
    """A missing ``anthropic-version`` is allowed (curl); a present one must be a date."""
    if version is not None and not VERSION_PATTERN.match(version):
        raise ClientError(
            f"`anthropic-version` must be a date such as 2023-06-01, not {version!r}",
            param="anthropic-version",
            code="invalid_anthropic_version",
        )


def to_chat_body(body: dict[str, Any], *, counting: bool = False) -> dict[str, Any]:
    """The OpenAI chat body for a Messages body (``counting``: a count_tokens body, no ``max_tokens``)."""
    for name, value in body.items():
        if value is None or name in _HANDLED or name in _DROPPED:
            continue
        raise unsupported(name, _REFUSED.get(name, "the OpenAI chat shape every route is served through has none"))
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ClientError("`model` is required and must be a string", param="model", code="missing_model")
    chat: dict[str, Any] = {
        "model": model,
        "messages": [*_system(body.get("system"), "system"), *_messages(body.get("messages"))],
    }
    if not counting:
        max_tokens = body.get("max_tokens")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ClientError("`max_tokens` is required and must be a positive integer", param="max_tokens")
        chat["max_tokens"] = max_tokens
    if body.get("stream") is True:
        # Usage arrives in the last chunk only when asked for; message_delta needs it.
        chat.update(stream=True, stream_options={"include_usage": True})
    elif body.get("stream") not in (None, False):
        raise ClientError("`stream` must be a boolean", param="stream")
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            chat[name] = body[name]
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(stop, str) for stop in stops):
            raise ClientError("`stop_sequences` must be an array of strings", param="stop_sequences")
        if stops:
            chat["stop"] = stops
    user_id = (body.get("metadata") or {}).get("user_id") if isinstance(body.get("metadata"), dict) else None
    if isinstance(user_id, str) and user_id:
        chat["user"] = user_id
    tools = _tools(body.get("tools"))
    if tools:
        chat["tools"] = tools
    chat.update(_tool_choice(body.get("tool_choice"), bool(tools)))
    chat.update(_reasoning(body.get("thinking"), body.get("output_config")))
    _check_context_management(body.get("context_management"))
    return chat


def _system(system: Any, where: str) -> list[dict[str, Any]]:
    """The top-level ``system``, or a ``system`` message of the newer API versions, as one system message."""
    if system is None or system == "" or system == []:
        return []
    if isinstance(system, str):
        return [{"role": "system", "content": system}]
    if not isinstance(system, list):
        raise ClientError(f"`{where}` must be a string or an array of text blocks", param=where)
    parts = [_text_part(block, f"{where}[{index}]") for index, block in enumerate(system)]
    return [{"role": "system", "content": parts[0]["text"] if len(parts) == 1 else parts}]


def _text_part(block: Any, where: str) -> dict[str, Any]:
    if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
        raise unsupported(where, "only text blocks are accepted here")
    return {"type": "text", "text": block["text"]}


def _messages(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise ClientError("`messages` must be a non-empty array", param="messages")
    messages: list[dict[str, Any]] = []
    for index, message in enumerate(raw):
        where = f"messages[{index}]"
        role = message.get("role") if isinstance(message, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(blocks, list):
            raise ClientError(f"`{where}.content` must be a string or an array of blocks", param=f"{where}.content")
        if role == "user":
            messages.extend(_user_turn(blocks, f"{where}.content"))
        elif role == "assistant":
            messages.append(_assistant_turn(blocks, f"{where}.content"))
        elif role == "system":
            messages.extend(_system(content, f"{where}.content"))
        else:
            raise ClientError(f"`{where}.role` must be `user`, `assistant` or `system`", param=f"{where}.role")
    return messages


def _user_turn(blocks: list[Any], where: str) -> list[dict[str, Any]]:
    """OpenAI wants each tool result as its own ``tool`` message, before the user's other parts."""
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for index, block in enumerate(blocks):
        block_where = f"{where}[{index}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "tool_result":
            results.append(_tool_result(block, block_where))
        elif kind == "image":
            parts.append({"type": "image_url", "image_url": {"url": _image_url(block.get("source"), block_where)}})
        elif kind == "document":
            parts.append(_document(block.get("source"), block_where))
        else:
            parts.append(_text_part(block, block_where))
    if not parts:
        return results
    content: str | list[dict[str, Any]] = parts
    if all(part["type"] == "text" for part in parts):
        content = "".join(part["text"] for part in parts) if len(parts) == 1 else parts
    return [*results, {"role": "user", "content": content}]


def _image_url(source: Any, where: str) -> str:
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "url" and isinstance(source.get("url"), str):
        return str(source["url"])
    if kind == "base64" and isinstance(source.get("data"), str):
        media_type = source.get("media_type")
        if media_type not in IMAGE_MEDIA_TYPES:
            raise ClientError(f"`{where}.source.media_type` must be one of {', '.join(IMAGE_MEDIA_TYPES)}")
        return f"data:{media_type};base64,{source['data']}"
    raise unsupported(f"{where}.source", "images must be `base64` or `url` sources (uploaded files live at Anthropic)")


def _document(source: Any, where: str) -> dict[str, Any]:
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "text" and isinstance(source.get("data"), str):
        return {"type": "text", "text": source["data"]}
    if kind == "base64" and source.get("media_type") == "application/pdf" and isinstance(source.get("data"), str):
        return {
            "type": "file",
            "file": {"filename": "document.pdf", "file_data": f"data:application/pdf;base64,{source['data']}"},
        }
    raise unsupported(f"{where}.source", "documents must be base64 PDF or plain text sources")


def _tool_result(block: dict[str, Any], where: str) -> dict[str, Any]:
    tool_use_id = block.get("tool_use_id")
    if not isinstance(tool_use_id, str) or not tool_use_id:
        raise ClientError(f"`{where}.tool_use_id` is required", param=f"{where}.tool_use_id")
    content = block.get("content")
    if content is None or isinstance(content, str):
        text = content or ""
    elif isinstance(content, list):
        text = "".join(_text_part(part, f"{where}.content[{index}]")["text"] for index, part in enumerate(content))
    else:
        raise ClientError(f"`{where}.content` must be a string or an array of text blocks", param=f"{where}.content")
    return {"role": "tool", "tool_call_id": tool_use_id, "content": text}


def _assistant_turn(blocks: list[Any], where: str) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for index, block in enumerate(blocks):
        block_where = f"{where}[{index}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind in ("thinking", "redacted_thinking"):
            continue  # earlier reasoning and its signature have no place in the OpenAI shape
        if kind == "tool_use":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise ClientError(f"`{block_where}` needs an `id` and a `name`", param=block_where)
            arguments = orjson.dumps(block.get("input") or {}).decode()
            calls.append(
                {"id": block["id"], "type": "function", "function": {"name": block["name"], "arguments": arguments}}
            )
        else:
            texts.append(_text_part(block, block_where)["text"])
    turn: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        turn["tool_calls"] = calls
    return turn


def _tools(raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ClientError("`tools` must be an array", param="tools")
    tools: list[dict[str, Any]] = []
    for index, tool in enumerate(raw):
        where = f"tools[{index}]"
        if not isinstance(tool, dict) or tool.get("type", "custom") != "custom" or "input_schema" not in tool:
            raise unsupported(
                where, "only custom tools with an `input_schema` can be sent (server tools run at Anthropic)"
            )
        function: dict[str, Any] = {"name": tool.get("name"), "parameters": tool["input_schema"]}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        if isinstance(tool.get("strict"), bool):
            function["strict"] = tool["strict"]
        tools.append({"type": "function", "function": function})
    return tools


def _tool_choice(choice: Any, has_tools: bool) -> dict[str, Any]:
    if choice is None:
        return {}
    kind = choice.get("type") if isinstance(choice, dict) else None
    translated: dict[str, Any]
    if kind == "auto":
        translated = {"tool_choice": "auto"}
    elif kind == "any":
        translated = {"tool_choice": "required"}
    elif kind == "tool" and isinstance(choice.get("name"), str):
        translated = {"tool_choice": {"type": "function", "function": {"name": choice["name"]}}}
    elif kind == "none":
        return {"tool_choice": "none"} if has_tools else {}
    else:
        raise ClientError("`tool_choice.type` must be auto, any, tool (with a name) or none", param="tool_choice")
    if not has_tools:
        raise ClientError("`tool_choice` needs `tools`", param="tool_choice")
    if choice.get("disable_parallel_tool_use") is True:
        translated["parallel_tool_calls"] = False
    return translated


def _reasoning(thinking: Any, output_config: Any) -> dict[str, Any]:
    """``output_config.format`` as OpenAI's ``response_format``; ``thinking`` and
    ``output_config.effort`` as the gemini provider takes them (``gateway.inbound_thinking``), which
    takes them out again, and names them, for a route that cannot.

    ``thinking``: ``enabled`` is its exact ``budget_tokens`` with thought summaries (which come back
    as ``thinking`` blocks), ``adaptive`` the model's own budget (-1) with them, ``disabled`` none (0).
    The effort is ``reasoning_effort`` (``max`` is Gemini's largest level, ``high``).
    """
    translated: dict[str, Any] = {}
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind == "enabled":
        budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise ClientError("`thinking.budget_tokens` must be a positive integer", param="thinking.budget_tokens")
        translated.update(google_thinking({"thinking_budget": budget, "include_thoughts": True}))
    elif kind == "adaptive":
        translated.update(google_thinking({"thinking_budget": -1, "include_thoughts": True}))
    elif kind == "disabled":
        translated.update(google_thinking({"thinking_budget": 0}))
    elif thinking is not None:
        raise ClientError("`thinking.type` must be enabled, adaptive or disabled", param="thinking")
    if output_config is None:
        return translated
    if not isinstance(output_config, dict):
        raise ClientError("`output_config` must be an object", param="output_config")
    for name, value in output_config.items():
        if name == "effort" and value in EFFORTS:
            translated["reasoning_effort"] = _GEMINI_EFFORTS[value]
            continue
        if name == "format" and isinstance(value, dict) and value.get("type") == "json_schema":
            schema = value.get("schema")
            if not isinstance(schema, dict):
                raise ClientError("`output_config.format.schema` must be an object", param="output_config.format")
            translated["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
        elif value is not None:
            raise unsupported(f"output_config.{name}", f"{value!r} has no OpenAI equivalent")
    return translated


def _check_context_management(raw: Any) -> None:
    """Edits that only clear earlier thinking are no-ops here (thinking blocks are never sent on);
    any other edit (clearing old tool results) changes what the model reads, and only Anthropic does it."""
    if raw is None:
        return
    edits = raw.get("edits") if isinstance(raw, dict) else None
    if not isinstance(edits, list):
        raise ClientError("`context_management.edits` must be an array", param="context_management.edits")
    for index, edit in enumerate(edits):
        kind = edit.get("type") if isinstance(edit, dict) else None
        if not (isinstance(kind, str) and kind.startswith("clear_thinking_")):
            raise unsupported(f"context_management.edits[{index}]", f"{kind!r} is done by Anthropic itself")
