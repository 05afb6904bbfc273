"""A fake OpenAI API (and OpenAI-compatible host) for the tests: real wire format, strict checks.

It serves ``POST /v1/chat/completions`` (JSON or SSE) and ``POST /v1/embeddings``, answering with
the shapes of the recorded bodies in ``fixtures/openai``. Every request is recorded and validated
against the official ``openai`` SDK's request types, with every TypedDict closed (unknown keys are
refused at any depth) and every ``Iterable`` checked eagerly, so a misnamed field is a 400 in
OpenAI's own error shape.

Tests script each request through directives in the prompt (or the embedding input), written
``[fake:name]`` or ``[fake:name=value]``:

* ``status=N``: answer HTTP N with OpenAI's error body (429 adds ``retry-after: 7``; 502 is an
  HTML page, as a proxy in front of OpenAI sends);
* ``echo_key``: put the bearer token received into the error message (a careless host);
* ``slow_ms=N``: wait before the response headers;
* ``cut=K``: stream K content chunks, then close without a finish reason;
* ``stream_error=K``: stream K content chunks, then an in-stream error event;
* ``no_usage``, ``usage_every_chunk``, ``no_done``: OpenAI-compatible hosts' habits in streams;
* ``usage=P,C[,CACHED]``: report these token counts instead of the counted ones;
* ``replay=NAME``: answer with a recorded body verbatim (``chat_completion_NN`` or ``stream_XXXX``).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
import re
import struct
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pydantic
import pydantic_core
from openai.types import EmbeddingCreateParams
from openai.types.chat.completion_create_params import (
    CompletionCreateParamsNonStreaming,
    CompletionCreateParamsStreaming,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

FIXTURES = Path(__file__).parent / "fixtures" / "openai"
DIRECTIVE = re.compile(r"\[fake:([a-z_]+)(?:=([^\]]*))?\]")
WORD = re.compile(r"\s*\S+")
EMBEDDING_DIMENSIONS = 8
TOKENS_PER_IMAGE = 85
RETRY_AFTER_SECONDS = "7"

# Each status's (type, code, message) as OpenAI sends them; every type differs so tests can
# check that the upstream's own type travels to the client.
ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "We could not parse the JSON body of your request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("request_forbidden", "unsupported_country_region_territory", "Country, region, or territory not supported"),
    404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
    408: ("timeout_error", None, "Request timed out."),
    409: ("conflict_error", None, "The request conflicts with another request in progress."),
    413: ("invalid_request_error", "request_too_large", "Request too large."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached on requests per min (RPM). Please try again in 7s."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", "overloaded", "The engine is currently overloaded, please try again later."),
    504: ("server_error", None, "Gateway timeout."),
}
BAD_GATEWAY_PAGE = (
    "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>"
)


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text()


def fixture_json(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(fixture_text(name))
    return loaded


def recorded_chunks(name: str) -> list[dict[str, Any]]:
    """The chunks of a recorded stream, without ``[DONE]``."""
    chunks: list[dict[str, Any]] = []
    for line in fixture_text(name).splitlines():
        data = line.removeprefix("data: ").strip()
        if line.startswith("data: ") and data != "[DONE]":
            chunks.append(json.loads(data))
    return chunks


# -- strict validation with the SDK's own request types -----------------------------------


def _closed(node: Any) -> Any:
    """A pydantic core schema with every TypedDict closed and every Iterable a list."""
    if isinstance(node, list):
        return [_closed(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _closed(value) for key, value in node.items()}
    if out.get("type") == "typed-dict":
        out["extra_behavior"] = "forbid"
    if out.get("type") == "generator":  # pydantic validates Iterable lazily; the fake must not
        out["type"] = "list"
    return out


def strict_validator(typed_dict: type[Any]) -> pydantic_core.SchemaValidator:
    schema = pydantic.TypeAdapter(typed_dict).core_schema
    return pydantic_core.SchemaValidator(cast(pydantic_core.CoreSchema, _closed(schema)))


def declared_keys(typed_dict: type[Any]) -> set[str]:
    """The keys a TypedDict declares, with those of its TypedDict bases."""
    keys = set(getattr(typed_dict, "__annotations__", {}))
    for base in getattr(typed_dict, "__orig_bases__", ()):
        if isinstance(base, type) and hasattr(base, "__annotations__") and base is not dict:
            keys |= declared_keys(base)
    return keys


CHAT_TYPES = {False: CompletionCreateParamsNonStreaming, True: CompletionCreateParamsStreaming}
CHAT_VALIDATORS = {stream: strict_validator(kind) for stream, kind in CHAT_TYPES.items()}
EMBEDDINGS_VALIDATOR = strict_validator(EmbeddingCreateParams)


def check_request(body: Any, typed_dict: type[Any], validator: pydantic_core.SchemaValidator) -> str | None:
    """None when ``body`` is a valid request of this type, else OpenAI's message for the problem."""
    if not isinstance(body, dict):
        return "We could not parse the JSON body of your request."
    unknown = sorted(set(body) - declared_keys(typed_dict))
    if unknown:
        return f"Unrecognized request argument supplied: {', '.join(unknown)}"
    try:
        validator.validate_python(body)
    except pydantic_core.ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        return f"Invalid value for '{where}': {problem['msg']} ({error.error_count()} problems)"
    return None


# -- what the fake answers ----------------------------------------------------------------


def error_body(message: str, error_type: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)]
    return []


def _images(messages: list[dict[str, Any]]) -> list[str]:
    urls = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            urls += [p["image_url"]["url"] for p in content if isinstance(p, dict) and p.get("type") == "image_url"]
    return urls


def count_words(text: str) -> int:
    """The fake's tokenizer: one token per whitespace-separated word."""
    return len(text.split())


def directives(texts: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for text in texts:
        for name, value in DIRECTIVE.findall(text):
            found[name] = value
    return found


@dataclass
class RecordedRequest:
    method: str
    path: str
    url: str
    headers: dict[str, str]
    body: Any


@dataclass
class Answer:
    """One scripted chat answer: choices of text or a tool call, and the usage to report."""

    texts: list[str]
    finish_reasons: list[str]
    tool_call: dict[str, Any] | None
    usage: dict[str, Any]


@dataclass
class FakeOpenAI:
    """The fake host. ``credential`` is the bearer token it accepts (None: no auth, like a local server)."""

    credential: str | None = None
    base_url: str = ""  # set once it is served, e.g. ``http://127.0.0.1:PORT``
    requests: list[RecordedRequest] = field(default_factory=list)

    @property
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/embeddings", self.embeddings, methods=["POST"]),
                Route("/{path:path}", self.unknown, methods=["GET", "POST", "PUT", "DELETE"]),
            ]
        )

    # -- the endpoints --------------------------------------------------------------------

    async def unknown(self, request: Request) -> Response:
        await self._record(request)
        message = f"Invalid URL ({request.method} {request.url.path})"
        return JSONResponse(error_body(message, "invalid_request_error"), status_code=404)

    async def chat(self, request: Request) -> Response:
        body = await self._record(request)
        refused = self._refuse(request, body)
        if refused is not None:
            return refused
        stream = body.get("stream") is True
        problem = check_request(body, CHAT_TYPES[stream], CHAT_VALIDATORS[stream])
        if problem is not None:
            return JSONResponse(error_body(problem, "invalid_request_error"), status_code=400)
        messages: list[dict[str, Any]] = body["messages"]
        script = directives([text for message in messages for text in _texts(message.get("content"))])
        early = await self._scripted_failure(request, script)
        if early is not None:
            return early
        replay = script.get("replay")
        if replay and not stream:
            return JSONResponse(fixture_json(f"{replay}.json"))
        if stream:
            chunks = recorded_chunks(f"{replay}.sse") if replay else self._chunks(body, script)
            authorization = request.headers.get("authorization", "nothing")
            return StreamingResponse(self._sse(chunks, body, script, authorization), media_type="text/event-stream")
        return JSONResponse(self._completion(body, script))

    async def embeddings(self, request: Request) -> Response:
        body = await self._record(request)
        refused = self._refuse(request, body)
        if refused is not None:
            return refused
        problem = check_request(body, EmbeddingCreateParams, EMBEDDINGS_VALIDATOR)
        if problem is not None:
            return JSONResponse(error_body(problem, "invalid_request_error"), status_code=400)
        raw = body["input"]
        inputs = [raw] if isinstance(raw, str) or (raw and isinstance(raw[0], int)) else list(raw)
        script = directives([item for item in inputs if isinstance(item, str)])
        early = await self._scripted_failure(request, script)
        if early is not None:
            return early
        dimensions = int(body.get("dimensions") or EMBEDDING_DIMENSIONS)
        data = []
        tokens = 0
        for index, item in enumerate(inputs):
            text = item if isinstance(item, str) else json.dumps(item)
            tokens += len(item) if isinstance(item, list) else count_words(text)
            digest = hashlib.sha256(text.encode()).digest()
            vector: list[float] | str = [(digest[i % len(digest)] - 128) / 128 for i in range(dimensions)]
            if body.get("encoding_format") == "base64":
                vector = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": vector})
        usage: dict[str, Any] = {"prompt_tokens": tokens, "total_tokens": tokens}
        if "no_usage" in script:
            return JSONResponse({"object": "list", "data": data, "model": body["model"]})
        return JSONResponse({"object": "list", "data": data, "model": body["model"], "usage": usage})

    # -- request checks -------------------------------------------------------------------

    async def _record(self, request: Request) -> Any:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self.requests.append(
            RecordedRequest(request.method, request.url.path, str(request.url), dict(request.headers), body)
        )
        return body

    def _refuse(self, request: Request, body: Any) -> Response | None:
        if not request.headers.get("content-type", "").startswith("application/json"):
            return JSONResponse(error_body("Content-Type must be application/json", "invalid_request_error"), 400)
        if self.credential is not None and request.headers.get("authorization") != f"Bearer {self.credential}":
            # OpenAI shows only the ends of a wrong key.
            given = request.headers.get("authorization", "").removeprefix("Bearer ")
            message = (
                f"Incorrect API key provided: {given[:3]}***{given[-4:]}."
                if given
                else "You didn't provide an API key."
            )
            return JSONResponse(error_body(message, "invalid_request_error", "invalid_api_key"), 401)
        if not isinstance(body, dict):
            return JSONResponse(
                error_body("We could not parse the JSON body of your request.", "invalid_request_error"), 400
            )
        return None

    async def _scripted_failure(self, request: Request, script: Mapping[str, str]) -> Response | None:
        if "slow_ms" in script:
            # Sleep in small steps so a client that gave up frees the server at once.
            remaining = int(script["slow_ms"]) / 1000
            while remaining > 0 and not await request.is_disconnected():
                await asyncio.sleep(0.02)
                remaining -= 0.02
        if "status" not in script:
            return None
        status = int(script["status"])
        if status == 502:
            return HTMLResponse(BAD_GATEWAY_PAGE, status_code=502)
        error_type, code, message = ERRORS.get(status, ("server_error", None, f"HTTP {status}"))
        if "echo_key" in script:
            message = f"{message} (you sent {request.headers.get('authorization', 'nothing')})"
        headers = {"retry-after": RETRY_AFTER_SECONDS} if status == 429 else {}
        return JSONResponse(error_body(message, error_type, code), status_code=status, headers=headers)

    # -- answers --------------------------------------------------------------------------

    def _answer(self, body: dict[str, Any], script: Mapping[str, str]) -> Answer:
        messages: list[dict[str, Any]] = body["messages"]
        prompt_words = sum(count_words(t) for m in messages for t in _texts(m.get("content")))
        images = _images(messages)
        prompt_tokens = prompt_words + TOKENS_PER_IMAGE * len(images)
        tools = body.get("tools") or []
        last = messages[-1]
        tool_call = None
        if tools and last.get("role") != "tool" and body.get("tool_choice") != "none":
            template = fixture_json("chat_completion_10.json")["choices"][0]["message"]["tool_calls"][0]
            tool_call = {
                **template,
                "function": {"name": tools[0]["function"]["name"], "arguments": template["function"]["arguments"]},
            }
        if last.get("role") == "tool":
            base = f"The tool {last['tool_call_id']} answered: {' '.join(_texts(last.get('content')))}"
        elif images:
            base = f"I see {len(images)} images: " + " ".join(url[:40] for url in images)
        else:
            base = fixture_json("chat_completion_00.json")["choices"][0]["message"]["content"]
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        stops = body.get("stop") or []
        stops = [stops] if isinstance(stops, str) else stops
        texts, finish_reasons = [], []
        for index in range(int(body.get("n") or 1)):
            text, finish = (f"Choice {index}: {base}" if index else base), "stop"
            for stop in stops:
                if stop in text:
                    text = text[: text.index(stop)]
            if limit is not None and count_words(text) > limit:
                text, finish = "".join(WORD.findall(text)[:limit]), "length"
            texts.append(text)
            finish_reasons.append("tool_calls" if tool_call else finish)
        completion_tokens = 12 if tool_call else sum(count_words(t) for t in texts)
        cached = 0
        if "usage" in script:
            numbers = [int(n) for n in script["usage"].split(",")]
            prompt_tokens, completion_tokens = numbers[0], numbers[1]
            cached = numbers[2] if len(numbers) > 2 else 0
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }
        return Answer(texts, finish_reasons, tool_call, usage)

    def _completion(self, body: dict[str, Any], script: Mapping[str, str]) -> dict[str, Any]:
        answer = self._answer(body, script)
        completion = fixture_json("chat_completion_00.json")
        template = completion["choices"][0]
        completion["model"] = body["model"]
        completion["choices"] = []
        for index, (text, finish) in enumerate(zip(answer.texts, answer.finish_reasons, strict=True)):
            choice = copy.deepcopy(template)
            choice["index"], choice["finish_reason"] = index, finish
            if answer.tool_call:
                choice["message"]["content"] = None
                choice["message"]["tool_calls"] = [answer.tool_call]
            else:
                choice["message"]["content"] = text
            completion["choices"].append(choice)
        completion["usage"] = answer.usage
        return completion

    def _chunks(self, body: dict[str, Any], script: Mapping[str, str]) -> list[dict[str, Any]]:
        """The stream of an answer in the recorded streams' shape: role, pieces, finish, usage."""
        answer = self._answer(body, script)
        envelope = {k: v for k, v in recorded_chunks("stream_e2aad469b71d.sse")[0].items() if k != "choices"}
        envelope["model"] = body["model"]

        def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                **envelope,
                "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }

        chunks = []
        for index, text in enumerate(answer.texts):
            if answer.tool_call:
                call = answer.tool_call
                head = {
                    "index": 0,
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["function"]["name"], "arguments": ""},
                }
                chunks.append(
                    chunk(index, {"role": "assistant", "content": None, "tool_calls": [head], "refusal": None})
                )
                for piece in re.findall(r".{1,6}", call["function"]["arguments"]):
                    chunks.append(chunk(index, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
            else:
                chunks.append(chunk(index, {"role": "assistant", "content": "", "refusal": None}))
                chunks += [chunk(index, {"content": piece}) for piece in WORD.findall(text)]
        chunks += [chunk(index, {}, finish) for index, finish in enumerate(answer.finish_reasons)]
        chunks.append({**envelope, "choices": [], "usage": answer.usage})
        return chunks

    async def _sse(
        self, chunks: list[dict[str, Any]], body: dict[str, Any], script: Mapping[str, str], authorization: str
    ) -> AsyncIterator[bytes]:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        usage = next((c["usage"] for c in chunks if c.get("usage")), None)
        content_sent = 0
        for chunk in chunks:
            is_usage_chunk = not chunk["choices"] and chunk.get("usage")
            if is_usage_chunk and (not include_usage or "no_usage" in script or "usage_every_chunk" in script):
                continue
            delta = chunk["choices"][0]["delta"] if chunk["choices"] else {}
            is_content = bool(delta.get("content") or (delta.get("tool_calls") and "role" not in delta))
            if is_content and "cut" in script and content_sent >= int(script["cut"]):
                return  # the connection closes mid-answer: no finish reason, no usage, no [DONE]
            if is_content and "stream_error" in script and content_sent >= int(script["stream_error"]):
                message = "The server had an error while processing your request."
                if "echo_key" in script:
                    message += f" (you sent {authorization})"
                error = error_body(message, "server_error")
                yield b"data: " + json.dumps(error).encode() + b"\n\n"
                return
            if "usage_every_chunk" in script and usage is not None:
                # Such hosts report a running total on every chunk; the finishing chunk has it all.
                finishing = any(choice["finish_reason"] for choice in chunk["choices"])
                done = usage["completion_tokens"] if finishing else min(content_sent, usage["completion_tokens"])
                running = {**usage, "completion_tokens": done, "total_tokens": usage["prompt_tokens"] + done}
                chunk = {**chunk, "usage": running}
            elif include_usage and not is_usage_chunk:
                chunk = {**chunk, "usage": None}  # OpenAI's shape when usage is asked for
            content_sent += is_content
            yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
        if "no_done" not in script:
            yield b"data: [DONE]\n\n"
