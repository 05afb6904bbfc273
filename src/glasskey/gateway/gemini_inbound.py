"""Gemini-format requests in, OpenAI-format bodies out: the request half of the Gemini inbound API.

A client of the Gemini API (the ``google-genai`` SDK) sends a ``GenerateContentRequest``; the
lifecycle speaks OpenAI's chat body. ``chat_body`` translates one into the other with no I/O, so
the request then gets every guarantee of ``/v1/chat/completions`` (quote, hold, fallback,
receipt) and may be served by a route of any provider. ``embedding_body`` does the same for
``embedContent`` and ``batchEmbedContents``. What an OpenAI body cannot carry is refused with a
``ClientError`` naming the field by its path (``generationConfig.topK``), before any money moves:
silently dropping a field would change what the model generates.

The settings (``generationConfig``, ``tools``, ``toolConfig``) and the reading of fields are
``gateway.gemini_inbound_config``'s; the answers' way back is ``gateway.gemini_answers``; the
opposite translation, for Gemini routes, is ``providers.gemini_translate``.
"""

from __future__ import annotations

import mimetypes
from typing import Any
from urllib.parse import urlsplit

import orjson

from glasskey.errors import ClientError
from glasskey.gateway.gemini_inbound_config import (
    as_list,
    as_text,
    fields,
    generation_params,
    join,
    tool_params,
    unsupported,
)

_REQUEST_FIELDS = frozenset({"model", "contents", "systemInstruction", "tools", "toolConfig", "generationConfig"})
_CONTENT_FIELDS = frozenset({"role", "parts"})
_PART_FIELDS = frozenset(
    {"text", "thought", "thoughtSignature", "inlineData", "fileData", "functionCall", "functionResponse"}
)
_EMBED_FIELDS = frozenset({"model", "content", "outputDimensionality"})
_GOOGLE_FILES_HOST = "generativelanguage.googleapis.com"
_AUDIO_FORMATS = {"audio/wav": "wav", "audio/x-wav": "wav", "audio/mpeg": "mp3", "audio/mp3": "mp3"}


# -- generateContent --------------------------------------------------------------------------


def chat_body(model: str, request: Any, *, stream: bool) -> dict[str, Any]:
    """The OpenAI chat body of a ``GenerateContentRequest`` for ``model`` (the path's model)."""
    found = fields(request, "", _REQUEST_FIELDS)
    contents = as_list(found.get("contents"), "contents")
    if not contents:
        raise ClientError("`contents` must not be empty", param="contents")
    body: dict[str, Any] = {"model": model, "messages": _messages(found.get("systemInstruction"), contents)}
    if "generationConfig" in found:
        body.update(generation_params(found["generationConfig"]))
    if "tools" in found:
        body.update(tool_params(found["tools"], found.get("toolConfig")))
    elif "toolConfig" in found:
        raise ClientError("`toolConfig` needs `tools`", param="toolConfig")
    if stream:
        # Gemini reports usage on a stream's last event; OpenAI upstreams report it only if asked.
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


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
    return as_text(found.get("text", ""), f"{where}.text")


def _assistant(parts: list[dict[str, Any]], where: str, turn: int, calls: _Calls) -> dict[str, Any] | None:
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for position, part in enumerate(parts):
        at = f"{where}.parts[{position}]"
        if "functionCall" in part:
            tool_calls.append(_tool_call(part, at, f"call_{turn}_{position}", calls))
        elif "text" in part and not part.get("thought"):
            texts.append(as_text(part["text"], f"{at}.text"))
        elif not part.get("thought"):
            raise unsupported(f"{at}.{next(iter(part), 'text')}", "a model turn may hold only text and function calls")
    if not texts and not tool_calls:
        return None  # a turn of thought summaries only: nothing an OpenAI model could be shown
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def _tool_call(part: dict[str, Any], where: str, default_id: str, calls: _Calls) -> dict[str, Any]:
    call = fields(part["functionCall"], f"{where}.functionCall", frozenset({"id", "name", "args"}))
    name = as_text(call.get("name"), f"{where}.functionCall.name")
    call_id = str(call.get("id") or default_id)
    calls.called(call_id, name)
    arguments = orjson.dumps(call.get("args", {})).decode()
    tool_call: dict[str, Any] = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    if "thoughtSignature" in part:
        # Where Google's OpenAI-compatible endpoint carries it; Gemini routes send it back.
        tool_call["extra_content"] = {"google": {"thought_signature": part["thoughtSignature"]}}
    return tool_call


def _tool_answer(part: dict[str, Any], where: str, calls: _Calls) -> dict[str, Any]:
    response = fields(part["functionResponse"], f"{where}.functionResponse", frozenset({"id", "name", "response"}))
    name = as_text(response.get("name"), f"{where}.functionResponse.name")
    call_id = calls.answer(response.get("id"), name, f"{where}.functionResponse")
    return {"role": "tool", "tool_call_id": call_id, "content": orjson.dumps(response.get("response", {})).decode()}


def _user(parts: list[dict[str, Any]], where: str, calls: _Calls) -> list[dict[str, Any]]:
    """Tool messages for the function responses, then one user message for everything else."""
    answers: list[dict[str, Any]] = []
    content: list[dict[str, Any]] = []
    for position, part in enumerate(parts):
        at = f"{where}.parts[{position}]"
        if "functionResponse" in part:
            answers.append(_tool_answer(part, at, calls))
        elif "text" in part:
            content.append({"type": "text", "text": as_text(part["text"], f"{at}.text")})
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
    mime = as_text(found.get("mimeType"), f"{where}.mimeType")
    data = as_text(found.get("data"), f"{where}.data")
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
    uri = as_text(found.get("fileUri"), f"{where}.fileUri")
    mime = str(found.get("mimeType") or mimetypes.guess_type(urlsplit(uri).path)[0] or "")
    # A file uploaded to Google's file service can be read by Gemini alone; any other route would
    # be handed a URL it cannot open.
    if uri.startswith("https://") and mime.startswith("image/") and urlsplit(uri).hostname != _GOOGLE_FILES_HOST:
        return {"type": "image_url", "image_url": {"url": uri}}
    raise unsupported(where, "only images by https URL can be passed on (not uploaded files or other media)")


# -- embeddings -------------------------------------------------------------------------------


def embedding_body(model: str, request: Any, *, batch: bool) -> dict[str, Any]:
    """The OpenAI embeddings body of an ``embedContent`` or ``batchEmbedContents`` request."""
    where = "requests" if batch else ""
    requests = as_list(fields(request, "", frozenset({"requests"})).get("requests"), where) if batch else [request]
    texts: list[str] = []
    dimensions: list[Any] = []
    for index, item in enumerate(requests):
        at = f"{where}[{index}]" if where else ""
        found = fields(item, at, _EMBED_FIELDS)
        named = str(found.get("model", model)).removeprefix("models/")
        if named != model:
            raise ClientError(f"`{join(at, 'model')}` must be the model of the path, {model!r}", param="model")
        content = fields(found.get("content"), join(at, "content"), _CONTENT_FIELDS)
        parts = as_list(content.get("parts", []), f"{join(at, 'content')}.parts")
        texts.append("".join(_plain_text(part, f"{join(at, 'content')}.parts[{i}]") for i, part in enumerate(parts)))
        dimensions.append(found.get("outputDimensionality"))
    body: dict[str, Any] = {"model": model, "input": texts if where else texts[0]}
    if len(set(dimensions)) > 1:
        # One OpenAI request has one ``dimensions``; a batch that mixes them would be answered wrongly.
        raise unsupported(f"{where}.outputDimensionality", "every request of a batch must ask for the same size")
    if dimensions and dimensions[0] is not None:
        body["dimensions"] = dimensions[0]
    return body
