"""A fake Gemini API (``generativelanguage.googleapis.com``) for the gemini provider's tests.

It speaks the real REST wire format: ``POST /v1beta/models/{model}:generateContent``,
``:streamGenerateContent?alt=sse`` (``data:`` events, each a whole ``GenerateContentResponse``)
and ``:batchEmbedContents``, the API key in ``x-goog-api-key``, and Google's error shape
``{"error": {"code", "message", "status", "details"}}``. Every request body is checked against
the ``google-genai`` SDK's pydantic types with their camelCase REST names only
(``by_name=False``), and unknown keys anywhere are a 400 ``INVALID_ARGUMENT``, so a misnamed
field fails the tests. Every answer is built from the SDK's response types and dumped
``by_alias``, so its field names are the real ones.

Requests are scripted by directives in the text of the last user turn (``[[name]]`` or
``[[name:argument]]``):

* ``[[error:N]]``: answer HTTP N with Google's error body (an HTML page from Google's front end
  for 408, 413 and 502, as Google sends); a 429 carries a ``RetryInfo`` of 7 s;
  ``[[retry-after:S]]`` adds a ``retry-after`` header; ``[[leak]]`` echoes the API key it got
  in the error message (for the canary test).
* ``[[slow:MS]]``: wait that long before the response headers.
* ``[[cut:N]]``: a stream sends N events, then ends without a finish reason.
* ``[[stream-error]]``: a stream sends two events, then an in-stream ``error`` object (503).
* ``[[tool:a,b]]``: call these functions (they must be declared), ``[[signature]]`` puts a
  thought signature on the calls.
* ``[[thoughts:N]]``, ``[[cached:N]]``: report N thinking or cached-content tokens; with
  ``thinkingConfig.includeThoughts``, a (non-streamed) text answer starts with ``THOUGHT_SUMMARY``
  as a ``thought`` part.
* ``[[blocked]]``: block the prompt (no candidate, ``promptFeedback.blockReason``).
* ``[[safety]]``: the candidate stops with ``finishReason: SAFETY`` and no content.
* ``[[no-usage]]``, ``[[negative-usage]]``: omit ``usageMetadata``, or report -5 output tokens.

A turn that answers function calls gets ``The tool answered: <responses>``. Tokens are words
(258 per image, as Gemini counts an image). Every request is recorded in ``requests``.
"""

from __future__ import annotations

import hashlib
import random
import re
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson
import pydantic
from google.genai import types
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

FAKE_API_KEY = "AIzaSy-fake-gemini-key-0123456789abcdef"
ANSWER = "Glasskey asked, and the fake Gemini answers in plain words: the quick brown fox jumps over the lazy dog."
IMAGE_TOKENS = 258
FUNCTION_CALL_TOKENS = 10
EMBEDDING_DIMENSIONS = 3072
WORDS_PER_EVENT = 3

_DIRECTIVE_RE = re.compile(r"\[\[([a-z-]+)(?::([^\]]*))?\]\]")
_PIECE_RE = re.compile(r"\s*\S+")
_REQUEST_KEYS = {
    "contents",
    "systemInstruction",
    "generationConfig",
    "tools",
    "toolConfig",
    "safetySettings",
    "cachedContent",
}
_EMBED_REQUEST_KEYS = {"model", "content", "taskType", "title", "outputDimensionality"}
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_MESSAGES = {
    400: "Invalid value at 'generation_config.temperature' (TYPE_FLOAT), \"hot\"",
    401: "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other"
    " valid authentication credential.",
    403: "The caller does not have permission",
    404: "models/{model} is not found for API version v1beta, or is not supported for generateContent.",
    409: "The operation was aborted.",
    429: "You exceeded your current quota, please check your plan and billing details.",
    500: "An internal error has occurred. Please retry or report in"
    " https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "Deadline expired before operation could complete.",
}
_HTML_TITLES = {408: "Request Timeout", 413: "Request Entity Too Large", 502: "Bad Gateway"}


@dataclass
class RecordedRequest:
    path: str
    query: str
    headers: dict[str, str]
    body: Any

    @property
    def url(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path


@dataclass
class Script:
    directives: dict[str, str] = field(default_factory=dict)

    def has(self, name: str) -> bool:
        return name in self.directives

    def number(self, name: str, default: int = 0) -> int:
        value = self.directives.get(name)
        return int(value) if value else default


def google_error(status: int, message: str, *, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": status, "message": message, "status": _STATUS_NAMES.get(status, "UNKNOWN")}
    if details:
        error["details"] = details
    return {"error": error}


def _error_response(status: int, message: str, **kwargs: Any) -> Response:
    return JSONResponse(google_error(status, message, **kwargs), status_code=status)


def _html_error(status: int) -> Response:
    title = _HTML_TITLES.get(status, "Error")
    page = (
        f"<!DOCTYPE html><html lang=en><meta charset=utf-8><title>Error {status} ({title})!!1</title>"
        f"<p><b>{status}.</b> <ins>That’s an error.</ins><p>The server cannot process the request.</html>"
    )
    return Response(page, status_code=status, media_type="text/html; charset=UTF-8")


def _invalid(error: pydantic.ValidationError, where: str) -> str:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"])
    return f"Invalid JSON payload received. {where}.{location}: {first['msg']}"


def _check(model: type[pydantic.BaseModel], value: Any, where: str) -> str | None:
    """Validate ``value`` against an SDK type, by its REST (camelCase) names only."""
    # The SDK accepts an unknown enum value with a warning (for newer API versions); the API
    # itself refuses it, and so does the fake.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            parsed = model.model_validate_json(orjson.dumps(value), by_alias=True, by_name=False)
        except pydantic.ValidationError as error:
            return _invalid(error, where)
    for warning in caught:
        if "is not a valid" in str(warning.message):
            return f"Invalid value at '{where}': {warning.message}"
    # Some SDK types take snake_case names too (as Google's proto JSON parser does); glasskey
    # writes camelCase only, so a key the SDK renamed on the way in is a misnamed field here.
    renamed = _renamed_key(value, parsed.model_dump(mode="json", by_alias=True, exclude_unset=True), where)
    return f'Invalid JSON payload received. Unknown name "{renamed}": Cannot find field.' if renamed else None


def _renamed_key(sent: Any, canonical: Any, where: str) -> str | None:
    """The first key of ``sent`` that is not spelled as in ``canonical``, or None."""
    if isinstance(sent, dict) and isinstance(canonical, dict):
        for key in sent:
            if key not in canonical:
                return f"{where}.{key}"
            found = _renamed_key(sent[key], canonical[key], f"{where}.{key}")
            if found:
                return found
    if isinstance(sent, list) and isinstance(canonical, list):
        for index, (a, b) in enumerate(zip(sent, canonical, strict=False)):
            found = _renamed_key(a, b, f"{where}[{index}]")
            if found:
                return found
    return None


def _check_content(content: Any, where: str, *, roles: tuple[str | None, ...]) -> str | None:
    problem = _check(types.Content, content, where)
    if problem:
        return problem
    if content.get("role") not in roles:
        return f"Please use a valid role: user, model. ({where}.role is {content.get('role')!r})"
    if not content.get("parts"):
        return f"{where}.parts must not be empty"
    return None


def validate_generate_request(body: Any) -> str | None:
    """What the real API would refuse with 400 in a ``generateContent`` body, or None."""
    if not isinstance(body, dict):
        return "Invalid JSON payload received. Expected an object."
    unknown = sorted(set(body) - _REQUEST_KEYS)
    if unknown:
        return f'Invalid JSON payload received. Unknown name "{unknown[0]}": Cannot find field.'
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    for index, content in enumerate(contents):
        problem = _check_content(content, f"contents[{index}]", roles=("user", "model"))
        if problem:
            return problem
    if "systemInstruction" in body:
        problem = _check_content(body["systemInstruction"], "systemInstruction", roles=("user", None))
        if problem:
            return problem
    config = body.get("generationConfig", {})
    problem = _check(types.GenerationConfig, config, "generationConfig")
    if problem:
        return problem
    if ("responseSchema" in config or "responseJsonSchema" in config) and config.get(
        "responseMimeType"
    ) != "application/json":
        return "generationConfig.responseJsonSchema needs responseMimeType application/json"
    if not 1 <= config.get("candidateCount", 1) <= 8:
        return "generationConfig.candidateCount must be between 1 and 8"
    for index, tool in enumerate(body.get("tools", [])):
        problem = _check(types.Tool, tool, f"tools[{index}]")
        if problem:
            return problem
        for declaration in tool.get("functionDeclarations", []):
            if "parameters" in declaration and "parametersJsonSchema" in declaration:
                return "parameters and parametersJsonSchema are mutually exclusive"
    if "toolConfig" in body:
        problem = _check(types.ToolConfig, body["toolConfig"], "toolConfig")
        if problem:
            return problem
        calling = body["toolConfig"].get("functionCallingConfig", {})
        if calling.get("allowedFunctionNames") and calling.get("mode") != "ANY":
            return "allowedFunctionNames may only be set when the mode is ANY"
    for index, setting in enumerate(body.get("safetySettings", [])):
        problem = _check(types.SafetySetting, setting, f"safetySettings[{index}]")
        if problem:
            return problem
    return None


def validate_embed_request(body: Any, model: str) -> str | None:
    if not isinstance(body, dict) or set(body) != {"requests"} or not isinstance(body["requests"], list):
        return 'Invalid JSON payload received. Expected exactly "requests".'
    if not 1 <= len(body["requests"]) <= 100:
        return "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch"
    for index, request in enumerate(body["requests"]):
        unknown = sorted(set(request) - _EMBED_REQUEST_KEYS)
        if unknown:
            return f"Invalid JSON payload received. Unknown name \"{unknown[0]}\" at 'requests[{index}]'."
        if request.get("model") != f"models/{model}":
            return f"requests[{index}].model must be models/{model}, the model of the batch"
        problem = _check(types.Content, request.get("content"), f"requests[{index}].content")
        if problem:
            return problem
        dimensions = request.get("outputDimensionality")
        if dimensions is not None and (not isinstance(dimensions, int) or dimensions < 1):
            return f"requests[{index}].outputDimensionality must be a positive integer"
    return None


def _texts(content: dict[str, Any]) -> list[str]:
    return [part["text"] for part in content.get("parts", []) if isinstance(part.get("text"), str)]


def _script_of(contents: list[dict[str, Any]]) -> Script:
    last_user: dict[str, Any] = next((c for c in reversed(contents) if c.get("role") == "user"), {"parts": []})
    text = " ".join(_texts(last_user))
    return Script({match[1]: match[2] or "" for match in _DIRECTIVE_RE.finditer(text)})


def _words(text: str) -> int:
    return len(text.split())


def _prompt_tokens(body: dict[str, Any]) -> int:
    total = 0
    for content in [*body.get("contents", []), body.get("systemInstruction", {"parts": []})]:
        for part in content.get("parts", []):
            if "text" in part:
                total += _words(part["text"])
            elif "inlineData" in part or "fileData" in part:
                total += IMAGE_TOKENS
            else:
                total += _words(orjson.dumps(part).decode().replace(",", " "))
    return total


THOUGHT_SUMMARY = "**Weighing it** I thought about it first."


@dataclass
class _Answer:
    candidates: list[types.Candidate]
    usage: types.GenerateContentResponseUsageMetadata | None
    feedback: types.GenerateContentResponsePromptFeedback | None = None
    pieces: list[list[str]] = field(default_factory=list)


class FakeGemini:
    """The fake server; ``app`` is the ASGI app to serve with ``ServerThread``."""

    def __init__(self, api_key: str = FAKE_API_KEY) -> None:
        self.api_key = api_key
        self.requests: list[RecordedRequest] = []
        self.app = Starlette(routes=[Route("/v1beta/models/{target:path}", self.handle, methods=["POST"])])

    @property
    def last(self) -> RecordedRequest:
        return self.requests[-1]

    async def handle(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        self.requests.append(
            RecordedRequest(
                request.url.path, request.url.query, {k.lower(): v for k, v in request.headers.items()}, body
            )
        )
        key = request.headers.get("x-goog-api-key")
        if not key:
            return _error_response(
                403, "Method doesn't allow unregistered callers (callers without established identity)."
            )
        if key != self.api_key:
            return self._invalid_key()
        if body is None:
            return _error_response(400, "Invalid JSON payload received. Unexpected token.")
        model, _, method = request.path_params["target"].rpartition(":")
        if method == "batchEmbedContents":
            return await self._embed(body, model, key)
        if method not in ("generateContent", "streamGenerateContent"):
            return _error_response(404, f"Method {method} is not found.")
        stream = method == "streamGenerateContent"
        if stream and request.query_params.get("alt") != "sse":
            return _error_response(400, "the fake only streams with alt=sse")
        problem = validate_generate_request(body)
        if problem:
            return _error_response(400, problem)
        script = _script_of(body["contents"])
        failure = await self._scripted_failure(script, model, key)
        if failure is not None:
            return failure
        answer, problem = self._answer(body, script)
        if problem:
            return _error_response(400, problem)
        if stream:
            return StreamingResponse(self._events(answer, model, script, key), media_type="text/event-stream")
        return JSONResponse(_dump(answer.candidates, answer.usage, model, answer.feedback))

    def _invalid_key(self) -> Response:
        details = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            },
            {
                "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                "locale": "en-US",
                "message": "API key not valid. Please pass a valid API key.",
            },
        ]
        return _error_response(400, "API key not valid. Please pass a valid API key.", details=details)

    async def _scripted_failure(self, script: Script, model: str, key: str) -> Response | None:
        if script.has("slow"):
            await anyio.sleep(script.number("slow") / 1000)
        if not script.has("error"):
            return None
        status = script.number("error")
        if status in _HTML_TITLES:
            return _html_error(status)
        message = _MESSAGES.get(status, "Unknown error.").format(model=model)
        if script.has("leak"):
            message += f" (the request used the key {key})"
        details = None
        if status == 429:
            details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}]
        response = _error_response(status, message, details=details)
        if script.has("retry-after"):
            response.headers["retry-after"] = script.directives["retry-after"]
        return response

    def _answer(self, body: dict[str, Any], script: Script) -> tuple[_Answer, str | None]:
        config = body.get("generationConfig", {})
        thoughts = script.number("thoughts")
        cached = script.number("cached")
        prompt = _prompt_tokens(body) + cached
        usage = types.GenerateContentResponseUsageMetadata(
            prompt_token_count=prompt,
            total_token_count=prompt,
            prompt_tokens_details=[types.ModalityTokenCount(modality=types.MediaModality.TEXT, token_count=prompt)],
        )
        if script.has("blocked"):
            feedback = types.GenerateContentResponsePromptFeedback(block_reason=types.BlockedReason.SAFETY)
            return _Answer([], usage, feedback), None
        candidates: list[types.Candidate] = []
        pieces: list[list[str]] = []
        output = 0
        for index in range(config.get("candidateCount", 1)):
            if script.has("safety"):
                candidates.append(types.Candidate(finish_reason=types.FinishReason.SAFETY, index=index))
                pieces.append([])
                continue
            if script.has("tool"):
                parts, problem = self._calls(body, script)
                if problem:
                    return _Answer([], None), problem
                output += FUNCTION_CALL_TOKENS * len(parts)
                content = types.Content(role="model", parts=parts)
                candidates.append(types.Candidate(content=content, finish_reason=types.FinishReason.STOP, index=index))
                pieces.append([])
                continue
            text, reason = self._text(body, config, index)
            output += _words(text)
            parts = [types.Part(text=text)]
            if thoughts and (config.get("thinkingConfig") or {}).get("includeThoughts"):
                parts.insert(0, types.Part(text=THOUGHT_SUMMARY, thought=True))
            content = types.Content(role="model", parts=parts)
            candidates.append(types.Candidate(content=content, finish_reason=reason, index=index))
            found = _PIECE_RE.findall(text)
            pieces.append(["".join(found[i : i + WORDS_PER_EVENT]) for i in range(0, len(found), WORDS_PER_EVENT)])
        if script.has("no-usage"):
            return _Answer(candidates, None, pieces=pieces), None
        if script.has("negative-usage"):
            output = -5
        usage = types.GenerateContentResponseUsageMetadata(
            prompt_token_count=prompt,
            candidates_token_count=output,
            thoughts_token_count=thoughts or None,
            cached_content_token_count=cached or None,
            total_token_count=prompt + output + thoughts,
            prompt_tokens_details=usage.prompt_tokens_details,
        )
        return _Answer(candidates, usage, pieces=pieces), None

    def _calls(self, body: dict[str, Any], script: Script) -> tuple[list[types.Part], str | None]:
        declared = {
            declaration["name"]
            for tool in body.get("tools", [])
            for declaration in tool.get("functionDeclarations", [])
        }
        parts = []
        for name in script.directives["tool"].split(","):
            if name not in declared:
                return [], f"the fake was told to call {name!r}, which the request does not declare"
            call = types.FunctionCall(name=name, args={"location": "Paris", "unit": "celsius"})
            signature = b"fake-thought-signature-" + name.encode() if script.has("signature") else None
            parts.append(types.Part(function_call=call, thought_signature=signature))
        return parts, None

    def _text(self, body: dict[str, Any], config: dict[str, Any], index: int) -> tuple[str, types.FinishReason]:
        last = body["contents"][-1]
        responses = [part["functionResponse"] for part in last["parts"] if "functionResponse" in part]
        if responses:
            text = "The tool answered: " + orjson.dumps(responses).decode()
        elif config.get("responseMimeType") == "application/json":
            text = orjson.dumps({"answer": "fake", "candidate": index}).decode()
        else:
            text = ANSWER if index == 0 else f"Candidate {index} says: {ANSWER}"
        for stop in config.get("stopSequences", []):
            if stop in text:
                text = text[: text.index(stop)]
        limit = config.get("maxOutputTokens")
        if limit is not None and _words(text) > limit:
            return " ".join(text.split()[:limit]), types.FinishReason.MAX_TOKENS
        return text, types.FinishReason.STOP

    async def _events(self, answer: _Answer, model: str, script: Script, key: str) -> AsyncIterator[bytes]:
        """SSE events as Gemini sends them: text in pieces, the finish and full usage on the last."""
        events = max((len(p) for p in answer.pieces), default=0)
        cut = script.number("cut") if script.has("cut") else None
        for number in range(events - 1):
            if cut is not None and number >= cut:
                return
            if script.has("stream-error") and number == 2:
                break
            candidates = [
                types.Candidate(content=types.Content(role="model", parts=[types.Part(text=pieces[number])]), index=i)
                for i, pieces in enumerate(answer.pieces)
                if number < len(pieces)
            ]
            partial = None
            if answer.usage is not None:
                prompt = answer.usage.prompt_token_count
                partial = types.GenerateContentResponseUsageMetadata(
                    prompt_token_count=prompt, total_token_count=prompt
                )
            yield _sse(_dump(candidates, partial, model, None))
            await anyio.sleep(0)
        if script.has("stream-error"):
            message = "The model is overloaded. Please try again later."
            if script.has("leak"):
                message += f" (the request used the key {key})"
            yield _sse(google_error(503, message))
            return
        if cut is not None:
            return
        final = []
        for candidate, pieces in zip(answer.candidates, answer.pieces, strict=True):
            if pieces:
                # Only a candidate with a piece left for this last event still has content in it.
                last = [types.Part(text=pieces[-1])] if len(pieces) == events else None
                content = types.Content(role="model", parts=last) if last else None
                candidate = candidate.model_copy(update={"content": content})
            final.append(candidate)
        yield _sse(_dump(final, answer.usage, model, answer.feedback))

    async def _embed(self, body: Any, model: str, key: str) -> Response:
        problem = validate_embed_request(body, model)
        if problem:
            return _error_response(400, problem)
        first = body["requests"][0]["content"]
        failure = await self._scripted_failure(_script_of([{"role": "user", **first}]), model, key)
        if failure is not None:
            return failure
        embeddings = []
        for request in body["requests"]:
            text = " ".join(_texts(request["content"]))
            dimensions = request.get("outputDimensionality", EMBEDDING_DIMENSIONS)
            rng = random.Random(hashlib.sha256(f"{model}\0{text}".encode()).digest())
            embeddings.append(types.ContentEmbedding(values=[rng.uniform(-1.0, 1.0) for _ in range(dimensions)]))
        dumped = types.EmbedContentResponse(embeddings=embeddings).model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
        return JSONResponse(dumped)


def _dump(
    candidates: list[types.Candidate],
    usage: types.GenerateContentResponseUsageMetadata | None,
    model: str,
    feedback: types.GenerateContentResponsePromptFeedback | None,
) -> dict[str, Any]:
    response = types.GenerateContentResponse(
        candidates=candidates or None,
        usage_metadata=usage,
        prompt_feedback=feedback,
        model_version=model,
        response_id="fake-" + hashlib.sha256(model.encode()).hexdigest()[:12],
    )
    dumped: dict[str, Any] = response.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped


def _sse(payload: dict[str, Any]) -> bytes:
    # Google ends each event with CRLF CRLF.
    return b"data: " + orjson.dumps(payload) + b"\r\n\r\n"
