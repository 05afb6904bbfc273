"""Pure translation between OpenAI's chat and embeddings shapes and the Gemini API's REST shapes.

Nothing here touches the network: ``chat_request`` turns an OpenAI chat body into a
``generateContent`` body (or refuses a feature Gemini cannot honour with ``ClientError``, so the
refusal happens before any upstream call), ``chat_completion`` turns a ``GenerateContentResponse``
back into a ``chat.completion``, ``StreamTranslator`` does the same incrementally for each SSE
event of ``streamGenerateContent``, and the embedding helpers build ``batchEmbedContents``
bodies. The field names are Gemini's REST (camelCase) names; the tests check every body against
the ``google-genai`` SDK's pydantic types.
"""

from __future__ import annotations

import mimetypes
import re
import secrets
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson

from glasskey.errors import ClientError, shown
from glasskey.providers.base import StreamCut, Usage, token_count

PROVIDER_NAME = "gemini"

# OpenAI parameters that change nothing Gemini would generate: bookkeeping for OpenAI's own
# dashboards and caches. They are accepted and not forwarded (documented in docs/providers/gemini.md).
_NOT_FORWARDED = frozenset(
    {"model", "stream", "stream_options", "user", "metadata", "store", "service_tier", "safety_identifier",
     "prompt_cache_key"}
)  # fmt: skip
# Of those, the best-effort and informational ones a client sets to mean something Gemini cannot
# do (an end user's id, tags, storage, a service tier, a cache key), with their no-op values:
# ``providers.best_effort`` lists them on the receipt as dropped, or refuses them under
# ``strict_params``. ``seed`` is translated (``generationConfig.seed``), so it is not here.
BEST_EFFORT_NO_OPS: dict[str, Callable[[Any], bool]] = {
    "user": lambda v: False,
    "safety_identifier": lambda v: False,
    "metadata": lambda v: v == {},
    "store": lambda v: v is False,
    "service_tier": lambda v: v in ("auto", "default"),
    "prompt_cache_key": lambda v: False,
}


def unhonoured_best_effort(body: dict[str, Any]) -> list[str]:
    """The best-effort parameters of ``body`` this provider would not honour (see BEST_EFFORT_NO_OPS)."""
    return [name for name, no_op in BEST_EFFORT_NO_OPS.items() if body.get(name) is not None and not no_op(body[name])]


_TRANSLATED = frozenset(
    {"messages", "temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "n", "seed",
     "presence_penalty", "frequency_penalty", "response_format", "tools", "tool_choice", "parallel_tool_calls",
     "reasoning_effort", "logprobs", "top_logprobs", "logit_bias", "modalities", "audio", "extra_body"}
)  # fmt: skip
_EMBEDDING_FIELDS = frozenset({"model", "input", "dimensions", "encoding_format", "user"})

# Gemini 2.5's thinking budgets for OpenAI's effort levels, as Google's own OpenAI-compatible
# endpoint maps them; "none" turns thinking off where the model allows it.
_THINKING_BUDGETS = {"none": 0, "minimal": 1024, "low": 1024, "medium": 8192, "high": 24576}
_TOOL_CHOICE_MODES = {"auto": "AUTO", "required": "ANY", "none": "NONE"}
_CONTENT_FILTER_REASONS = frozenset(
    {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT",
     "IMAGE_RECITATION", "MODEL_ARMOR"}
)  # fmt: skip
_DATA_URL_RE = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)(?P<params>(?:;[^;,]*)*?);base64,(?P<data>.*)", re.DOTALL)
# ``batchEmbedContents`` takes at most 100 requests per call.
EMBED_BATCH_SIZE = 100


def refuse(param: str, what: str | None = None) -> ClientError:
    return ClientError(f"{what or f'`{param}`'} is not supported by the gemini provider", param=param)


# -- chat request ---------------------------------------------------------------------------


def chat_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """The ``generateContent`` body for an OpenAI chat body; ``ClientError`` for what Gemini cannot do."""
    for name, value in body.items():
        if name not in _NOT_FORWARDED and name not in _TRANSLATED and value is not None:
            raise refuse(name)
    _refuse_unsupported(body)
    system_parts, contents = _contents(body.get("messages") or [])
    if not contents:
        raise ClientError("the gemini provider needs at least one user or assistant message", param="messages")
    request: dict[str, Any] = {"contents": contents}
    if system_parts:
        request["systemInstruction"] = {"parts": system_parts}
    config = _generation_config(body)
    if config:
        request["generationConfig"] = config
    tools = body.get("tools")
    if tools:
        request["tools"] = [{"functionDeclarations": [_function_declaration(i, t) for i, t in enumerate(tools)]}]
        tool_config = _tool_config(body.get("tool_choice"))
        if tool_config:
            request["toolConfig"] = tool_config
    elif body.get("tool_choice") not in (None, "none", "auto"):
        raise ClientError("`tool_choice` needs `tools`", param="tool_choice")
    return request


def _refuse_unsupported(body: Mapping[str, Any]) -> None:
    if body.get("logprobs"):
        raise refuse("logprobs")
    if body.get("top_logprobs") is not None:
        raise refuse("top_logprobs")
    if body.get("logit_bias"):
        raise refuse("logit_bias")
    if body.get("audio") is not None:
        raise refuse("audio", "audio output")
    modalities = body.get("modalities")
    if modalities is not None and list(modalities) != ["text"]:
        raise refuse("modalities", "an output modality other than text")
    # Gemini has no switch that limits a turn to one function call; rather than cut the model's
    # answer after the fact, the request is refused (docs/providers/gemini.md).
    if body.get("parallel_tool_calls") is False and body.get("tools"):
        raise refuse("parallel_tool_calls", "`parallel_tool_calls: false`")


def _generation_config(body: Mapping[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for openai_name, gemini_name in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
        ("n", "candidateCount"),
    ):
        if body.get(openai_name) is not None:
            config[gemini_name] = body[openai_name]
    # ``max_completion_tokens`` supersedes the deprecated ``max_tokens`` when both are sent.
    for name in ("max_completion_tokens", "max_tokens"):
        if body.get(name) is not None:
            config["maxOutputTokens"] = body[name]
            break
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    stops = [s for s in stops if isinstance(s, str) and s]
    if stops:
        config["stopSequences"] = stops
    config.update(_response_format(body.get("response_format")))
    effort = body.get("reasoning_effort")
    if effort is not None:
        if effort not in _THINKING_BUDGETS:
            raise refuse("reasoning_effort", f"`reasoning_effort: {shown(effort)}`")
        config["thinkingConfig"] = {"thinkingBudget": _THINKING_BUDGETS[effort]}
    thinking = google_thinking_config(body.get("extra_body"))
    if thinking:
        # The exact budget wins over an effort's; ``includeThoughts`` alone keeps the effort's budget.
        config["thinkingConfig"] = {**config.get("thinkingConfig", {}), **thinking}
    return config


def google_thinking_config(extra_body: Any) -> dict[str, Any]:
    """Gemini's ``thinkingConfig`` from ``extra_body.google.thinking_config``, the extension
    Google's own OpenAI-compatible endpoint reads (``thinking_budget``: -1 the model decides, 0
    off, else a token budget; ``include_thoughts``: thought summaries in the answer, given back
    as ``reasoning_content``). The Anthropic endpoint carries ``thinking`` to Gemini routes here."""
    if extra_body is None:
        return {}
    google = extra_body.get("google") if isinstance(extra_body, dict) else None
    if not isinstance(extra_body, dict) or set(extra_body) != {"google"} or not isinstance(google, dict):
        raise refuse("extra_body", '`extra_body` other than `{"google": {"thinking_config": ...}}`')
    thinking = google.get("thinking_config")
    if set(google) != {"thinking_config"} or not isinstance(thinking, dict):
        raise refuse("extra_body.google", "`extra_body.google` other than `thinking_config`")
    unknown = set(thinking) - {"thinking_budget", "include_thoughts"}
    if unknown:
        raise refuse(f"extra_body.google.thinking_config.{sorted(unknown)[0]}")
    config: dict[str, Any] = {}
    budget = thinking.get("thinking_budget")
    if budget is not None:
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < -1:
            raise ClientError(
                "`extra_body.google.thinking_config.thinking_budget` must be -1, 0 or a positive integer",
                param="extra_body.google.thinking_config.thinking_budget",
            )
        config["thinkingBudget"] = budget
    include = thinking.get("include_thoughts")
    if include is not None:
        if not isinstance(include, bool):
            raise ClientError(
                "`extra_body.google.thinking_config.include_thoughts` must be a boolean",
                param="extra_body.google.thinking_config.include_thoughts",
            )
        config["includeThoughts"] = include
    return config


def _response_format(response_format: Any) -> dict[str, Any]:
    if response_format is None:
        return {}
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return {}
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise ClientError("`response_format.json_schema.schema` must be an object", param="response_format")
        # ``responseJsonSchema`` takes JSON Schema as OpenAI clients write it; ``responseSchema``
        # would take only Google's OpenAPI subset (no $defs, $ref, ...).
        return {"responseMimeType": "application/json", "responseJsonSchema": schema}
    raise refuse("response_format", f"`response_format` of type {shown(kind)!r}")


def _function_declaration(index: int, tool: Any) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(tool.get("function"), dict):
        raise refuse(f"tools[{index}]", "a tool other than `function`")
    function = tool["function"]
    if not isinstance(function.get("name"), str):
        raise ClientError(f"`tools[{index}].function.name` is required", param=f"tools[{index}]")
    declaration: dict[str, Any] = {"name": function["name"]}
    if function.get("description") is not None:
        declaration["description"] = function["description"]
    if function.get("parameters") is not None:
        # JSON Schema as written by the client, unlike ``parameters`` (Google's OpenAPI subset).
        declaration["parametersJsonSchema"] = function["parameters"]
    return declaration


def _tool_config(tool_choice: Any) -> dict[str, Any] | None:
    if tool_choice is None:
        return None
    if isinstance(tool_choice, str):
        if tool_choice not in _TOOL_CHOICE_MODES:
            raise refuse("tool_choice", f"`tool_choice: {shown(tool_choice)}`")
        return {"functionCallingConfig": {"mode": _TOOL_CHOICE_MODES[tool_choice]}}
    if isinstance(tool_choice, dict) and tool_choice.get("type") == "function":
        name = (tool_choice.get("function") or {}).get("name")
        if not isinstance(name, str):
            raise ClientError("`tool_choice.function.name` is required", param="tool_choice")
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    raise refuse("tool_choice", "this `tool_choice`")


# -- messages -------------------------------------------------------------------------------


def _contents(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """System parts and ``contents``; consecutive turns of one role are merged into one."""
    system_parts: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}

    def append(role: str, parts: list[dict[str, Any]]) -> None:
        if not parts:
            return
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})

    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            # Gemini has one system instruction; every system message, wherever it stands, joins it.
            system_parts.extend(_text_parts(content, where))
        elif role == "user":
            append("user", _user_parts(content, where))
        elif role == "assistant":
            parts = _text_parts(content, where)
            for position, call in enumerate(message.get("tool_calls") or []):
                part, call_id, name = _function_call_part(call, f"{where}.tool_calls[{position}]")
                call_names[call_id] = name
                parts.append(part)
            append("model", parts)
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in call_names:
                raise ClientError(
                    f"`{where}.tool_call_id` names no tool call of an earlier assistant message",
                    param=f"{where}.tool_call_id",
                )
            text = "".join(part["text"] for part in _text_parts(content, where))
            append("user", [{"functionResponse": {"name": call_names[call_id], "response": _tool_response(text)}}])
        else:
            raise refuse(f"{where}.role", f"the message role {shown(role)!r}")
    return system_parts, contents


def _text_parts(content: Any, where: str) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise ClientError(f"`{where}.content` must be a string or an array", param=f"{where}.content")
    parts = [_text_part(part, f"{where}.content[{position}]") for position, part in enumerate(content)]
    return [part for part in parts if part is not None]


def _text_part(part: Any, where: str) -> dict[str, Any] | None:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind not in ("text", "refusal") or not isinstance(part.get(kind), str):
        raise refuse(where, f"a {shown(kind)!r} part in this message")
    return {"text": part[kind]} if part[kind] else None


def _user_parts(content: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        return _text_parts(content, where)
    parts: list[dict[str, Any]] = []
    for position, part in enumerate(content):
        at = f"{where}.content[{position}]"
        if isinstance(part, dict) and part.get("type") == "image_url":
            parts.append(_image_part(part.get("image_url"), at))
        else:
            text = _text_part(part, at)
            if text is not None:
                parts.append(text)
    return parts


def _image_part(image: Any, where: str) -> dict[str, Any]:
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise ClientError(f"`{where}.image_url.url` must be a string", param=where)
    if url.startswith("data:"):
        match = _DATA_URL_RE.fullmatch(url)
        if match is None:
            raise refuse(where, "an image data URL that is not base64")
        return {"inlineData": {"mimeType": match["mime"], "data": match["data"]}}
    if url.startswith(("https://", "http://")):
        return {"fileData": {"mimeType": guess_image_mime(url), "fileUri": url}}
    raise refuse(where, "an image URL that is neither https nor a data URL")


def guess_image_mime(url: str) -> str:
    guessed, _ = mimetypes.guess_type(urlsplit(url).path)
    return guessed if guessed and guessed.startswith("image/") else "image/jpeg"


def _function_call_part(call: Any, where: str) -> tuple[dict[str, Any], str, str]:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise ClientError(f"`{where}` must be a function call with a name", param=where)
    try:
        args = orjson.loads(function.get("arguments") or "{}")
    except orjson.JSONDecodeError:
        raise ClientError(f"`{where}.function.arguments` is not valid JSON", param=where) from None
    if not isinstance(args, dict):
        raise ClientError(f"`{where}.function.arguments` must be a JSON object", param=where)
    part: dict[str, Any] = {"functionCall": {"name": function["name"], "args": args}}
    # Google's own OpenAI-compatible endpoint carries Gemini's thought signature here, and
    # Gemini 3 refuses a function call sent back without it.
    signature = ((call.get("extra_content") or {}).get("google") or {}).get("thought_signature")
    if isinstance(signature, str):
        part["thoughtSignature"] = signature
    return part, str(call.get("id")), function["name"]


def _tool_response(text: str) -> dict[str, Any]:
    """Gemini wants an object: a JSON object is passed as is, anything else is wrapped."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"result": text}
    return value if isinstance(value, dict) else {"result": value}


# -- chat response --------------------------------------------------------------------------


def finish_reason(gemini_reason: Any, has_tool_calls: bool) -> str:
    if has_tool_calls:
        return "tool_calls"
    if gemini_reason == "MAX_TOKENS":
        return "length"
    if gemini_reason in _CONTENT_FILTER_REASONS:
        return "content_filter"
    return "stop"


def _count(metadata: Mapping[str, Any], name: str) -> int:
    """A token count as reported, within ``TOKEN_COUNT_MAX``; proto3 JSON omits zeros (so a missing
    count is 0) and may write counts as strings of digits."""
    return token_count(metadata.get(name), strings=True) or 0


def usage_of(metadata: Mapping[str, Any]) -> tuple[dict[str, Any], Usage]:
    """OpenAI usage and billable ``Usage`` from ``usageMetadata``.

    ``promptTokenCount`` already includes the cached tokens; thinking tokens are billed as output,
    so they join the completion tokens (and are shown as reasoning tokens).
    """
    prompt = _count(metadata, "promptTokenCount") + _count(metadata, "toolUsePromptTokenCount")
    cached = _count(metadata, "cachedContentTokenCount")
    thoughts = _count(metadata, "thoughtsTokenCount")
    completion = _count(metadata, "candidatesTokenCount") + thoughts
    total = token_count(metadata.get("totalTokenCount"))
    body = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion if total is None else total,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": thoughts},
    }
    return body, Usage(input_tokens=prompt, output_tokens=completion, cached_tokens=cached)


class _CallIds:
    """Gemini's function calls usually carry no id; OpenAI clients need one to answer them."""

    def __init__(self) -> None:
        self._prefix = f"call_{secrets.token_hex(8)}"
        self._count = 0

    def next(self, given: Any) -> str:
        self._count += 1
        return given if isinstance(given, str) and given else f"{self._prefix}_{self._count}"


def _candidate_parts(candidate: Mapping[str, Any], ids: _CallIds) -> tuple[str, str, list[dict[str, Any]]]:
    """The answer text, the thought summaries (sent only when ``includeThoughts`` asked for them)
    and the OpenAI tool calls of one candidate."""
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in (candidate.get("content") or {}).get("parts") or []:
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("text"), str):
            (thoughts if part.get("thought") else texts).append(part["text"])
        call = part.get("functionCall")
        if isinstance(call, dict):
            tool_call: dict[str, Any] = {
                "id": ids.next(call.get("id")),
                "type": "function",
                "function": {
                    "name": str(call.get("name") or ""),
                    "arguments": orjson.dumps(call.get("args") or {}).decode(),
                },
            }
            if isinstance(part.get("thoughtSignature"), str):
                tool_call["extra_content"] = {"google": {"thought_signature": part["thoughtSignature"]}}
            calls.append(tool_call)
    return "".join(texts), "".join(thoughts), calls


def _model_of(response: Mapping[str, Any], fallback: str) -> str:
    version = response.get("modelVersion")
    return version.removeprefix("models/") if isinstance(version, str) and version else fallback


def _completion_id(response: Mapping[str, Any]) -> str:
    response_id = response.get("responseId")
    return f"chatcmpl-{response_id}" if isinstance(response_id, str) and response_id else new_completion_id()


def new_completion_id() -> str:
    return f"chatcmpl-{secrets.token_hex(12)}"


def _blocked(response: Mapping[str, Any]) -> bool:
    feedback = response.get("promptFeedback")
    return isinstance(feedback, dict) and feedback.get("blockReason") is not None


def chat_completion(response: Mapping[str, Any], model: str, created: int) -> tuple[dict[str, Any], Usage | None]:
    ids = _CallIds()
    choices = []
    for position, candidate in enumerate(response.get("candidates") or []):
        text, thoughts, calls = _candidate_parts(candidate, ids)
        message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else ""), "refusal": None}
        if thoughts:  # where OpenAI-compatible hosts (DeepSeek, vLLM) put reasoning text
            message["reasoning_content"] = thoughts
        if calls:
            message["tool_calls"] = calls
        choices.append(
            {
                "index": candidate.get("index", position),
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(candidate.get("finishReason"), bool(calls)),
            }
        )
    if not choices and _blocked(response):
        # A prompt blocked by Gemini's safety filters gets no candidate at all.
        message = {"role": "assistant", "content": None, "refusal": None}
        choices.append({"index": 0, "message": message, "logprobs": None, "finish_reason": "content_filter"})
    body: dict[str, Any] = {
        "id": _completion_id(response),
        "object": "chat.completion",
        "created": created,
        "model": _model_of(response, model),
        "choices": choices,
    }
    metadata = response.get("usageMetadata")
    if not isinstance(metadata, dict):
        return body, None
    body["usage"], usage = usage_of(metadata)
    return body, usage


# -- streaming ------------------------------------------------------------------------------


def stream_error(error: Any, *, started: bool) -> StreamCut:
    """A ``{"error": {...}}`` object inside a stream (Google's error shape)."""
    detail = error if isinstance(error, dict) else {}
    code = detail.get("code")
    status = code if isinstance(code, int) and 400 <= code <= 599 else 502
    message = str(detail.get("message") or "the upstream reported an error inside the stream")
    prefix = "" if started else "before any content: "
    return StreamCut(PROVIDER_NAME, status, prefix + message, error_type=str(detail.get("status") or "stream_error"))


class StreamTranslator:
    """Turns each ``GenerateContentResponse`` of a stream into OpenAI chunks as it arrives."""

    def __init__(self, model: str, created: int, include_usage: bool) -> None:
        self.model = model
        self.created = created
        self.include_usage = include_usage
        self.completion_id: str | None = None
        self.usage_metadata: dict[str, Any] | None = None
        self._ids = _CallIds()
        self._started: set[int] = set()
        self._tool_calls: dict[int, int] = {}
        self._finished: dict[int, str] = {}

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.completion_id or new_completion_id(),
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    @staticmethod
    def _choice(index: int, delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}

    def feed(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        if "error" in event:
            raise stream_error(event["error"], started=bool(self._started))
        if self.completion_id is None:
            self.completion_id = _completion_id(event)
        self.model = _model_of(event, self.model)
        if isinstance(event.get("usageMetadata"), dict):
            self.usage_metadata = event["usageMetadata"]
        chunks: list[dict[str, Any]] = []
        candidates = event.get("candidates") or []
        if not candidates and _blocked(event) and 0 not in self._started:
            self._started.add(0)
            self._finished[0] = "content_filter"
            chunks.append(self._chunk([self._choice(0, {"role": "assistant", "content": ""}, "content_filter")]))
        for position, candidate in enumerate(candidates):
            chunks.extend(self._candidate(candidate.get("index", position), candidate))
        return chunks

    def _candidate(self, index: int, candidate: Mapping[str, Any]) -> list[dict[str, Any]]:
        chunks = []
        text, thoughts, calls = _candidate_parts(candidate, self._ids)
        delta: dict[str, Any] = {}
        if index not in self._started:
            self._started.add(index)
            delta = {"role": "assistant", "content": ""}
        if thoughts:
            delta["reasoning_content"] = thoughts
        if text:
            delta["content"] = text
        if calls:
            first = self._tool_calls.get(index, 0)
            self._tool_calls[index] = first + len(calls)
            delta["tool_calls"] = [{"index": first + k, **call} for k, call in enumerate(calls)]
            if not text and "content" in delta:
                delta["content"] = None
        if delta:
            chunks.append(self._chunk([self._choice(index, delta)]))
        reason = candidate.get("finishReason")
        if reason is not None and index not in self._finished:
            self._finished[index] = finish_reason(reason, index in self._tool_calls)
            chunks.append(self._chunk([self._choice(index, {}, self._finished[index])]))
        return chunks

    def finish(self) -> list[dict[str, Any]]:
        """The final usage chunk, once the upstream stream has ended; ``StreamCut`` if it ended early."""
        if not self._started or any(index not in self._finished for index in self._started):
            raise StreamCut(
                PROVIDER_NAME, 502, "the upstream stream ended without a finish reason", error_type="stream_cut"
            )
        if self.usage_metadata is None:
            return []
        usage_body, _ = usage_of(self.usage_metadata)
        return [{**self._chunk([]), "usage": usage_body}]

    @property
    def usage(self) -> Usage | None:
        return None if self.usage_metadata is None else usage_of(self.usage_metadata)[1]


# -- embeddings -----------------------------------------------------------------------------


def embedding_batches(body: Mapping[str, Any], model: str) -> list[dict[str, Any]]:
    """``batchEmbedContents`` bodies (at most ``EMBED_BATCH_SIZE`` texts each) for an OpenAI body."""
    for name, value in body.items():
        if name not in _EMBEDDING_FIELDS and value is not None:
            raise refuse(name)
    if body.get("encoding_format") not in (None, "float", "base64"):
        raise ClientError("`encoding_format` must be `float` or `base64`", param="encoding_format")
    raw = body.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts or not all(isinstance(text, str) for text in texts):
        raise refuse("input", "token arrays as embedding `input`")
    dimensions = body.get("dimensions")
    requests = []
    for text in texts:
        request: dict[str, Any] = {"model": f"models/{model}", "content": {"parts": [{"text": text}]}}
        if dimensions is not None:
            request["outputDimensionality"] = dimensions
        requests.append(request)
    return [{"requests": requests[i : i + EMBED_BATCH_SIZE]} for i in range(0, len(requests), EMBED_BATCH_SIZE)]


def embedding_vectors(response: Mapping[str, Any]) -> list[list[float]]:
    vectors = []
    for embedding in response.get("embeddings") or []:
        values = embedding.get("values") if isinstance(embedding, dict) else None
        if not isinstance(values, list):
            raise ValueError("an embedding without values")
        vectors.append([float(v) for v in values])
    return vectors


def embedding_list(vectors: list[list[float]], model: str) -> dict[str, Any]:
    """OpenAI's list; Gemini reports no token usage for embeddings, so the body says 0."""
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": vector} for i, vector in enumerate(vectors)],
        "model": model,
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }
