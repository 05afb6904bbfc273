"""Gemini-format requests in, OpenAI-format bodies out: the request half of the Gemini inbound API.

A client of the Gemini API (the ``google-genai`` SDK) sends a ``GenerateContentRequest``; the
lifecycle speaks OpenAI's chat body. ``chat_body`` translates one into the other with no I/O, so
the request then gets every guarantee of ``/v1/chat/completions`` (quote, hold, fallback,
receipt) and may be served by a route of any provider. ``embedding_body`` does the same for
``embedContent`` and ``batchEmbedContents``. What an OpenAI body cannot carry is refused with a
``ClientError`` naming the field by its path (``generationConfig.topK``), before any money moves:
silently dropping a field would change what the model generates.

The reverse direction (OpenAI answers to Gemini answers) is ``gateway.gemini_answers``; the
opposite translation, for Gemini routes, is ``providers.gemini_translate``, whose tables this
module reads backwards. Field names are accepted in both of the spellings Google's JSON parser
accepts (``maxOutputTokens`` and ``max_output_tokens``).
"""

from __future__ import annotations

from typing import Any

import orjson

from glasskey.errors import ClientError

# The tables the gemini provider translates with, read backwards here.
from glasskey.providers.gemini_translate import _THINKING_BUDGETS as THINKING_BUDGETS
from glasskey.providers.gemini_translate import _TOOL_CHOICE_MODES as TOOL_CHOICE_MODES

_REQUEST_FIELDS = frozenset({"model", "contents", "systemInstruction", "tools", "toolConfig", "generationConfig"})
_CONTENT_FIELDS = frozenset({"role", "parts"})
_PART_FIELDS = frozenset(
    {"text", "thought", "thoughtSignature", "inlineData", "fileData", "functionCall", "functionResponse"}
)
_GENERATION_FIELDS = frozenset(
    {"temperature", "topP", "candidateCount", "maxOutputTokens", "stopSequences", "presencePenalty",
     "frequencyPenalty", "seed", "responseMimeType", "responseSchema", "responseJsonSchema", "thinkingConfig",
     "responseModalities", "responseLogprobs", "audioTimestamp", "enableEnhancedCivicAnswers"}
)  # fmt: skip
# Switches that are harmless when off (their proto default); when on, nothing OpenAI-shaped carries them.
_OFF_ONLY = ("responseLogprobs", "audioTimestamp", "enableEnhancedCivicAnswers")
_SAMPLING = {
    "temperature": "temperature",
    "topP": "top_p",
    "candidateCount": "n",
    "maxOutputTokens": "max_tokens",
    "presencePenalty": "presence_penalty",
    "frequencyPenalty": "frequency_penalty",
    "seed": "seed",
}
_EMBED_FIELDS = frozenset({"model", "content", "outputDimensionality"})
_CALLING_MODES = {mode: choice for choice, mode in TOOL_CHOICE_MODES.items()}
# Gemini's thinking budget becomes the smallest OpenAI effort whose Gemini budget covers it.
_EFFORTS_BY_BUDGET = sorted(
    ((budget, effort) for effort, budget in THINKING_BUDGETS.items() if effort not in ("none", "minimal")),
)
_THINKING_LEVELS = frozenset({"minimal", "low", "medium", "high"})
_AUDIO_FORMATS = {"audio/wav": "wav", "audio/x-wav": "wav", "audio/mpeg": "mp3", "audio/mp3": "mp3"}


def unsupported(path: str, why: str = "") -> ClientError:
    reason = why or "glasskey's Gemini API cannot carry it to a route"
    return ClientError(f"`{path}` is not supported: {reason}", param=path, code="unsupported_parameter")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def fields(value: Any, where: str, known: frozenset[str]) -> dict[str, Any]:
    """The object's fields by their camelCase names, nulls left out; an unknown field is refused."""
    if not isinstance(value, dict):
        raise ClientError(f"`{where or 'the request body'}` must be an object", param=where or None)
    found: dict[str, Any] = {}
    for name, item in value.items():
        camel = _camel(name)
        if item is None:
            continue
        if camel not in known:
            raise unsupported(_join(where, camel))
        found[camel] = item
    return found


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ClientError(f"`{where}` must be an array", param=where)
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ClientError(f"`{where}` must be a string", param=where)
    return value


# -- generateContent --------------------------------------------------------------------------


def chat_body(model: str, request: Any, *, stream: bool) -> dict[str, Any]:
    """The OpenAI chat body of a ``GenerateContentRequest`` for ``model`` (the path's model)."""
    found = fields(request, "", _REQUEST_FIELDS)
    contents = _list(found.get("contents"), "contents")
    if not contents:
        raise ClientError("`contents` must not be empty", param="contents")
    body: dict[str, Any] = {"model": model, "messages": _messages(found.get("systemInstruction"), contents)}
    if "generationConfig" in found:
        body.update(_generation(found["generationConfig"]))
    if "tools" in found:
        body.update(_tools(found["tools"], found.get("toolConfig")))
    elif "toolConfig" in found:
        raise ClientError("`toolConfig` needs `tools`", param="toolConfig")
    if stream:
        # Gemini reports usage on a stream's last event; OpenAI upstreams report it only if asked.
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _generation(config: Any) -> dict[str, Any]:
    where = "generationConfig"
    found = fields(config, where, _GENERATION_FIELDS)
    params: dict[str, Any] = {_SAMPLING[name]: found[name] for name in _SAMPLING if name in found}
    for name in _OFF_ONLY:
        if found.get(name):
            raise unsupported(f"{where}.{name}")
    stops = found.get("stopSequences")
    if stops:
        params["stop"] = [_text(stop, f"{where}.stopSequences") for stop in _list(stops, f"{where}.stopSequences")]
    modalities = found.get("responseModalities")
    if modalities is not None and [str(m).upper() for m in _list(modalities, f"{where}.responseModalities")] not in (
        [],
        ["TEXT"],
    ):
        raise unsupported(f"{where}.responseModalities", "only TEXT output can be generated")
    response_format = _response_format(found)
    if response_format is not None:
        params["response_format"] = response_format
    if "thinkingConfig" in found:
        effort = _reasoning_effort(found["thinkingConfig"], f"{where}.thinkingConfig")
        if effort is not None:
            params["reasoning_effort"] = effort
    return params


def _response_format(found: dict[str, Any]) -> dict[str, Any] | None:
    mime = found.get("responseMimeType", "text/plain")
    schema = found.get("responseJsonSchema")
    if schema is None and "responseSchema" in found:
        schema = json_schema_of(found["responseSchema"])
    if mime == "application/json":
        if schema is None:
            return {"type": "json_object"}
        return {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
    if mime != "text/plain":
        raise unsupported("generationConfig.responseMimeType", f"{mime!r} output has no OpenAI equivalent")
    if schema is not None:
        raise ClientError(
            "a response schema needs `responseMimeType: application/json`", param="generationConfig.responseSchema"
        )
    return None


def _reasoning_effort(config: Any, where: str) -> str | None:
    found = fields(config, where, frozenset({"thinkingBudget", "thinkingLevel", "includeThoughts"}))
    # ``includeThoughts`` is accepted: thought summaries are optional in Gemini's own answers too,
    # and an OpenAI-shaped answer has none to give (docs/providers.md).
    level = found.get("thinkingLevel")
    if isinstance(level, str) and level.lower() in _THINKING_LEVELS:
        return level.lower()
    if level is not None and level != "THINKING_LEVEL_UNSPECIFIED":
        raise unsupported(f"{where}.thinkingLevel", f"the level {level!r} is unknown")
    budget = found.get("thinkingBudget")
    if budget is None or budget == -1:  # -1: the model decides, as it does when nothing is asked
        return None
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
        raise ClientError(f"`{where}.thinkingBudget` must be -1, 0 or a positive integer", param=where)
    if budget == 0:
        return "none"
    return next((effort for cap, effort in _EFFORTS_BY_BUDGET if budget <= cap), _EFFORTS_BY_BUDGET[-1][1])


def json_schema_of(schema: Any) -> Any:
    """JSON Schema for Google's OpenAPI-subset ``Schema`` (upper-case types, ``nullable``)."""
    if isinstance(schema, list):
        return [json_schema_of(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted: dict[str, Any] = {}
    for raw_name, value in schema.items():
        name = _camel(raw_name)
        if name in ("propertyOrdering", "nullable", "example") or value is None:
            continue  # ordering and examples are hints Gemini alone reads; nullable is folded below
        if name == "type" and isinstance(value, str):
            converted["type"] = value.lower()
        elif name == "properties" and isinstance(value, dict):
            converted["properties"] = {key: json_schema_of(item) for key, item in value.items()}
        elif name in ("items", "anyOf"):
            converted[name] = json_schema_of(value)
        else:
            converted[name] = value
    if schema.get("nullable") and isinstance(converted.get("type"), str):
        converted["type"] = [converted["type"], "null"]
    return converted


def _tools(tools: Any, tool_config: Any) -> dict[str, Any]:
    declared: list[dict[str, Any]] = []
    for index, tool in enumerate(_list(tools, "tools")):
        found = fields(tool, f"tools[{index}]", frozenset({"functionDeclarations"}))
        for position, declaration in enumerate(_list(found.get("functionDeclarations", []), f"tools[{index}]")):
            declared.append(_function(declaration, f"tools[{index}].functionDeclarations[{position}]"))
    params: dict[str, Any] = {"tools": declared} if declared else {}
    if tool_config is None:
        return params
    config = fields(tool_config, "toolConfig", frozenset({"functionCallingConfig"}))
    calling = fields(
        config.get("functionCallingConfig", {}),
        "toolConfig.functionCallingConfig",
        frozenset({"mode", "allowedFunctionNames"}),
    )
    mode = str(calling.get("mode", "AUTO")).upper()
    if mode == "MODE_UNSPECIFIED":
        mode = "AUTO"
    if mode not in _CALLING_MODES:
        raise unsupported("toolConfig.functionCallingConfig.mode", f"the mode {mode!r} has no OpenAI equivalent")
    allowed = calling.get("allowedFunctionNames")
    if allowed and mode == "ANY":
        # ANY with a list means "call one of these": offering only those tools, with a call
        # required, asks exactly that of any provider.
        names = set(_list(allowed, "toolConfig.functionCallingConfig.allowedFunctionNames"))
        params["tools"] = [tool for tool in declared if tool["function"]["name"] in names]
        if not params["tools"]:
            raise ClientError(
                "`allowedFunctionNames` names no declared function",
                param="toolConfig.functionCallingConfig.allowedFunctionNames",
            )
    elif allowed:
        raise unsupported("toolConfig.functionCallingConfig.allowedFunctionNames", "it is honoured only with mode ANY")
    if declared:
        params["tool_choice"] = _CALLING_MODES[mode]
    return params


def _function(declaration: Any, where: str) -> dict[str, Any]:
    found = fields(declaration, where, frozenset({"name", "description", "parameters", "parametersJsonSchema"}))
    function: dict[str, Any] = {"name": _text(found.get("name"), f"{where}.name")}
    if "description" in found:
        function["description"] = _text(found["description"], f"{where}.description")
    if "parametersJsonSchema" in found:
        function["parameters"] = found["parametersJsonSchema"]
    elif "parameters" in found:
        function["parameters"] = json_schema_of(found["parameters"])
    return {"type": "function", "function": function}


# -- contents ---------------------------------------------------------------------------------


class _Calls:
    """The function calls of the model's turns, so each ``functionResponse`` finds its call's id.

    Gemini matches a response to its call by name (and by id when the call had one); OpenAI needs
    the id. Calls without one get ``call_<turn>_<part>``, the same for the same conversation.
    """

    def __init__(self) -> None:
        self._open: list[tuple[str, str]] = []  # (id, name) of calls not yet answered, in order

    def called(self, call_id: str, name: str) -> None:
        self._open.append((call_id, name))

    def answer(self, call_id: Any, name: str, where: str) -> str:
        for position, (open_id, open_name) in enumerate(self._open):
            if (call_id and open_id == call_id) or (not call_id and open_name == name):
                del self._open[position]
                return open_id
        raise ClientError(f"`{where}` answers no earlier functionCall named {name!r}", param=where)


def _messages(system: Any, contents: list[Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if system is not None:
        found = fields(system, "systemInstruction", _CONTENT_FIELDS)
        texts = [_plain_text(part, f"systemInstruction.parts[{i}]") for i, part in enumerate(found.get("parts", []))]
        if any(texts):
            messages.append({"role": "system", "content": "\n\n".join(text for text in texts if text)})
    calls = _Calls()
    for index, content in enumerate(contents):
        where = f"contents[{index}]"
        found = fields(content, where, _CONTENT_FIELDS)
        parts = [fields(part, f"{where}.parts[{i}]", _PART_FIELDS) for i, part in enumerate(found.get("parts", []))]
        role = found.get("role", "user")
        if role == "model":
            message = _assistant(parts, where, index, calls)
            if message is not None:
                messages.append(message)
        elif role in ("user", "function"):
            messages.extend(_user(parts, where, calls))
        else:
            raise ClientError(f"`{where}.role` must be `user` or `model`", param=f"{where}.role")
    if not any(message["role"] != "system" for message in messages):
        raise ClientError("`contents` holds nothing to answer", param="contents")
    return messages


def _plain_text(part: Any, where: str) -> str:
    found = fields(part, where, frozenset({"text"}))
    return _text(found.get("text", ""), f"{where}.text")


def _assistant(parts: list[dict[str, Any]], where: str, turn: int, calls: _Calls) -> dict[str, Any] | None:
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for position, part in enumerate(parts):
        at = f"{where}.parts[{position}]"
        if "functionCall" in part:
            call = fields(part["functionCall"], f"{at}.functionCall", frozenset({"id", "name", "args"}))
            name = _text(call.get("name"), f"{at}.functionCall.name")
            call_id = str(call.get("id") or f"call_{turn}_{position}")
            calls.called(call_id, name)
            tool_call: dict[str, Any] = {
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": orjson.dumps(call.get("args", {})).decode()},
            }
            if "thoughtSignature" in part:
                # Where Google's OpenAI-compatible endpoint carries it; Gemini routes send it back.
                tool_call["extra_content"] = {"google": {"thought_signature": part["thoughtSignature"]}}
            tool_calls.append(tool_call)
        elif "text" in part and not part.get("thought"):
            texts.append(_text(part["text"], f"{at}.text"))
        elif not part.get("thought"):
            raise unsupported(f"{at}.{next(iter(part), 'text')}", "a model turn may hold only text and function calls")
    if not texts and not tool_calls:
        return None  # a turn of thought summaries only: nothing an OpenAI model could be shown
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def _user(parts: list[dict[str, Any]], where: str, calls: _Calls) -> list[dict[str, Any]]:
    """Tool messages for the function responses, then one user message for everything else."""
    answers: list[dict[str, Any]] = []
    content: list[dict[str, Any]] = []
    for position, part in enumerate(parts):
        at = f"{where}.parts[{position}]"
        if "functionResponse" in part:
            response = fields(part["functionResponse"], f"{at}.functionResponse", frozenset({"id", "name", "response"}))
            name = _text(response.get("name"), f"{at}.functionResponse.name")
            call_id = calls.answer(response.get("id"), name, f"{at}.functionResponse")
            answer = orjson.dumps(response.get("response", {})).decode()
            answers.append({"role": "tool", "tool_call_id": call_id, "content": answer})
        elif "text" in part:
            content.append({"type": "text", "text": _text(part["text"], f"{at}.text")})
        elif "inlineData" in part:
            content.append(_inline(part["inlineData"], f"{at}.inlineData"))
        elif "fileData" in part:
            content.append(_file(part["fileData"], f"{at}.fileData"))
        else:
            raise unsupported(f"{at}.{next(iter(part), 'text')}", "a user turn may hold text, media and answers")
    if not content:
        return answers
    if len(content) == 1 and content[0]["type"] == "text":
        return [*answers, {"role": "user", "content": content[0]["text"]}]
    return [*answers, {"role": "user", "content": content}]


def _inline(blob: Any, where: str) -> dict[str, Any]:
    found = fields(blob, where, frozenset({"mimeType", "data", "displayName"}))
    mime = _text(found.get("mimeType"), f"{where}.mimeType")
    data = _text(found.get("data"), f"{where}.data")
    if mime.startswith("image/"):
        return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}
    if mime in _AUDIO_FORMATS:
        return {"type": "input_audio", "input_audio": {"data": data, "format": _AUDIO_FORMATS[mime]}}
    if mime == "application/pdf":
        filename = str(found.get("displayName") or "document.pdf")
        return {"type": "file", "file": {"filename": filename, "file_data": f"data:{mime};base64,{data}"}}
    raise unsupported(f"{where}.mimeType", f"inline {mime!r} data has no OpenAI equivalent")


def _file(file: Any, where: str) -> dict[str, Any]:
    found = fields(file, where, frozenset({"mimeType", "fileUri", "displayName"}))
    uri = _text(found.get("fileUri"), f"{where}.fileUri")
    mime = str(found.get("mimeType") or "")
    if uri.startswith("https://") and (not mime or mime.startswith("image/")):
        return {"type": "image_url", "image_url": {"url": uri}}
    raise unsupported(where, "only images by https URL can be passed on (not uploaded files or other media)")


# -- embeddings -------------------------------------------------------------------------------


def embedding_body(model: str, request: Any, *, batch: bool) -> dict[str, Any]:
    """The OpenAI embeddings body of an ``embedContent`` or ``batchEmbedContents`` request."""
    where = "requests" if batch else ""
    requests = _list(fields(request, "", frozenset({"requests"})).get("requests"), where) if batch else [request]
    texts: list[str] = []
    dimensions: list[Any] = []
    for index, item in enumerate(requests):
        at = f"{where}[{index}]" if where else ""
        found = fields(item, at, _EMBED_FIELDS)
        named = str(found.get("model", model)).removeprefix("models/")
        if named != model:
            raise ClientError(f"`{_join(at, 'model')}` must be the model of the path, {model!r}", param="model")
        content = fields(found.get("content"), _join(at, "content"), _CONTENT_FIELDS)
        parts = _list(content.get("parts", []), f"{_join(at, 'content')}.parts")
        texts.append("".join(_plain_text(part, f"{_join(at, 'content')}.parts[{i}]") for i, part in enumerate(parts)))
        dimensions.append(found.get("outputDimensionality"))
    body: dict[str, Any] = {"model": model, "input": texts if where else texts[0]}
    if len(set(dimensions)) > 1:
        # One OpenAI request has one ``dimensions``; a batch that mixes them would be answered wrongly.
        raise unsupported(f"{where}.outputDimensionality", "every request of a batch must ask for the same size")
    if dimensions and dimensions[0] is not None:
        body["dimensions"] = dimensions[0]
    return body
