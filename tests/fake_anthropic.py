"""A local Anthropic Messages API for the tests: the real wire format, strict about what it gets.

``FakeAnthropic.app`` is a Starlette app serving ``POST /v1/messages``. Every request is
recorded (URL, headers, body) and checked the way the real API checks it: the ``x-api-key`` and
``anthropic-version`` headers, then the body against the official SDK's request types
(``MessageCreateParamsNonStreaming`` / ``Streaming`` through pydantic), with unknown keys refused
at every level, plus the conversation rules the API enforces (non-empty text, each
``tool_result`` answering a ``tool_use`` of the previous turn). A bad request gets a 400 in
Anthropic's error shape, so a misnamed field fails the test that sent it.

Answers are built on the recorded bodies and streams of ``fixtures/anthropic``. The text of the
last user turn steers the fake with ``#fake:<directive>[=<value>]``:

* ``status=N``: fail with HTTP N and Anthropic's error body (``retry_after=S`` sets the
  ``retry-after`` header of a 429, default 17); ``echo_key``: a 400 quoting the key received;
* ``slow=MS``: wait before the first byte;
* ``cut=N``: end the stream after N deltas with no ``message_stop``; ``drop=N``: break the
  connection there; ``stream_error=TYPE``: send an ``error`` event after two deltas;
* ``replay=FILE``: answer with a recorded fixture exactly;
* ``cache``: report half the prompt as read from the cache and a quarter as written to it;
  ``usage=IN,OUT``: report these counts;
* ``refusal``: stop with ``stop_reason: refusal``;
* ``redacted``: with thinking on, add a ``redacted_thinking`` block after the thinking one;
* ``web_search``: call the server tool ``web_search`` and answer with a citation of its result
  (usage counts one ``server_tool_use.web_search_requests``).

With ``thinking`` enabled (or adaptive) the answer opens with a ``thinking`` block whose
``signature`` is an HMAC of its text under the fake's own secret; like the real API, a thinking
(or redacted thinking) block sent back in an assistant turn must be one the fake issued, byte for
byte, or the request is a 400 (``Invalid signature``). Every stream's bytes are kept in
``sent_streams``, so a test can compare what reached its client with what the upstream sent.

Otherwise it answers a fixed sentence; with tools (and no tool result yet) it calls the first
tool, or the forced one; after a tool result it repeats it; with ``output_config.format`` it
answers the recorded JSON; it mentions the images it received; it honours ``stop_sequences``
and ``max_tokens`` (one token per word).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import itertools
import json
import re
import threading
import types
import typing
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import pydantic
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming, MessageCreateParamsStreaming
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from typing_extensions import is_typeddict

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"
VERSIONS = ("2023-06-01", "2026-10-21")
# Accepted by the 2023-06-01 API version only; the SDK's types follow the newer version.
SAMPLING = ("temperature", "top_p", "top_k")
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
DEFAULT_REPLY = "Hello there! I am the fake Anthropic upstream, and this answer has fifteen words in it."
REFUSAL_REPLY = "I can't help with that."
DEFAULT_RETRY_AFTER = "17"
_DIRECTIVE = re.compile(r"#fake:(\w+)(?:=(\S+))?")
_WORD = re.compile(r"\s*\S+")
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_ids = itertools.count(1)
_SIGNING_SECRET = b"fake-anthropic-thinking"
REDACTED_PREFIX = "RkFLRS1SRURBQ1RFRA"  # base64 of b"FAKE-REDACTED", as the start of every redacted block


def signature_of(thinking: str) -> str:
    """The signature the fake gives a thinking text (real ones are opaque base64 too)."""
    digest = hmac.new(_SIGNING_SECRET, thinking.encode(), hashlib.sha256).digest()
    return base64.b64encode(b"fake-sig:" + digest * 4).decode()


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


# -- request validation -------------------------------------------------------------------


@functools.cache
def _adapter(streaming: bool) -> pydantic.TypeAdapter[Any]:
    params = MessageCreateParamsStreaming if streaming else MessageCreateParamsNonStreaming
    return pydantic.TypeAdapter(params)


@functools.cache
def _hints(typed_dict: Any) -> dict[str, Any]:
    return typing.get_type_hints(typed_dict)


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _materialize(value: Any, path: str, problems: list[str]) -> None:
    """Pydantic checks ``Iterable`` fields lazily: iterate them all to run the checks."""
    if isinstance(value, dict):
        for key, item in value.items():
            _materialize(item, _join(path, key), problems)
        return
    if isinstance(value, str | bytes | int | float | bool | pydantic.BaseModel) or not hasattr(value, "__iter__"):
        return
    iterator = iter(value)
    for index in itertools.count():
        try:
            item = next(iterator)
        except StopIteration:
            return
        except pydantic.ValidationError as error:
            # The error's location starts at the item's index within this iterable.
            problems += [f"{_join(path, '.'.join(map(str, e['loc'])))}: {e['msg']}" for e in error.errors()]
            return
        _materialize(item, _join(path, index), problems)


def _literal_matches(hint: Any, value: Any) -> bool:
    options = [arg for arg in get_args(hint) if arg is not type(None)] if _is_union(hint) else [hint]
    literals = [arg for option in options if get_origin(option) is Literal for arg in get_args(option)]
    return not literals or value in literals


def _is_union(hint: Any) -> bool:
    return get_origin(hint) in (Union, types.UnionType)


def _may_describe(hint: Any, value: Any) -> bool:
    """Whether a member of a union is a candidate for ``value`` (by JSON kind and discriminators)."""
    if isinstance(value, dict):
        if is_typeddict(hint):
            fields = _hints(hint)
            return all(
                _literal_matches(fields[key], value[key]) for key in ("type", "role") if key in fields and key in value
            )
        return get_origin(hint) is dict or hint in (object, Any)
    if isinstance(value, list):
        return get_origin(hint) not in (None, dict, Literal) and not _is_union(hint)
    return True


def _unknown_keys(value: Any, hint: Any, path: str) -> list[str]:
    """Keys that no SDK type allows, wherever they are (pydantic itself ignores them)."""
    if is_typeddict(hint):
        if not isinstance(value, dict):
            return []
        fields = _hints(hint)
        problems = [f"{_join(path, key)}: Extra inputs are not permitted" for key in value if key not in fields]
        for key, item in value.items():
            if key in fields:
                problems += _unknown_keys(item, fields[key], _join(path, key))
        return problems
    if _is_union(hint):
        results = [_unknown_keys(value, option, path) for option in get_args(hint) if _may_describe(option, value)]
        if not results or any(not result for result in results):
            return []
        return min(results, key=len)
    args = get_args(hint)
    if isinstance(value, list) and args and _may_describe(hint, value):
        return [problem for i, item in enumerate(value) for problem in _unknown_keys(item, args[0], _join(path, i))]
    return []


def _sampling_problems(body: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for name, low, high in (("temperature", 0.0, 1.0), ("top_p", 0.0, 1.0), ("top_k", 0, 1_000_000)):
        value = body.get(name)
        if name not in body:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(f"{name}: Input should be a valid number")
        elif not low <= value <= high:
            problems.append(f"{name}: Input should be between {low} and {high}")
    return problems


def _conversation_problems(body: dict[str, Any]) -> list[str]:
    """The rules the API enforces beyond the types."""
    problems: list[str] = []
    tools = body.get("tools") or []
    names = [tool.get("name") for tool in tools]
    problems += [f"tools.{i}.name: String should match pattern" for i, n in enumerate(names) if not _TOOL_NAME.match(n)]
    choice = body.get("tool_choice")
    if choice and choice["type"] in ("any", "tool") and not tools:
        problems.append("tool_choice: tool_choice may only be specified while providing tools")
    if choice and choice["type"] == "tool" and choice["name"] not in names:
        problems.append(f"tool_choice.name: Tool '{choice['name']}' not found in provided tools")
    system = body.get("system")
    if isinstance(system, list):
        problems += [
            f"system.{i}.text: text content blocks must be non-empty" for i, b in enumerate(system) if not b["text"]
        ]
    messages = body["messages"]
    if not messages:
        problems.append("messages: at least one message is required")
    pending: set[str] = set()
    for i, message in enumerate(messages):
        content = message["content"]
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        if not content and i < len(messages) - 1:
            problems.append(f"messages.{i}: all messages must have non-empty content")
        kinds = [block["type"] for block in content]
        results = {block["tool_use_id"] for block in content if block["type"] == "tool_result"}
        if pending and pending - results:
            problems.append(
                f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                + ", ".join(sorted(pending - results))
            )
        if results - pending:
            problems.append(
                f"messages.{i}: unexpected `tool_use_id` found in `tool_result` blocks: "
                f"{', '.join(sorted(results - pending))}. Each `tool_result` block must have a corresponding"
                " `tool_use` block in the previous message."
            )
        if "tool_result" in kinds and kinds != sorted(kinds, key=lambda kind: kind != "tool_result"):
            problems.append(f"messages.{i}: `tool_result` blocks must come first in the content")
        for j, block in enumerate(content):
            if block["type"] == "text" and not block["text"]:
                problems.append(f"messages.{i}.content.{j}.text: text content blocks must be non-empty")
            if block["type"] == "thinking" and block.get("signature") != signature_of(block.get("thinking", "")):
                problems.append(f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block")
            if block["type"] == "redacted_thinking" and not str(block.get("data")).startswith(REDACTED_PREFIX):
                problems.append(f"messages.{i}.content.{j}: Invalid `data` in `redacted_thinking` block")
        pending = {block["id"] for block in content if block["type"] == "tool_use"}
    return problems


def validate_request(body: Any, version: str = "2023-06-01") -> list[str]:
    """Every problem the Messages API would find in ``body``; empty when it is valid."""
    if not isinstance(body, dict):
        return ["body: Input should be an object"]
    streaming = body.get("stream") is True
    params = MessageCreateParamsStreaming if streaming else MessageCreateParamsNonStreaming
    sampling = SAMPLING if version == "2023-06-01" else ()
    core = {key: value for key, value in body.items() if key not in sampling}
    try:
        validated = _adapter(streaming).validate_python(core)
    except pydantic.ValidationError as error:
        return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()]
    problems: list[str] = []
    _materialize(validated, "", problems)
    if problems:
        return problems
    problems = _unknown_keys(core, params, "")
    problems += _sampling_problems({key: value for key, value in body.items() if key in sampling})
    return problems or _conversation_problems(body)


# -- answers ------------------------------------------------------------------------------


@dataclass
class Received:
    url: str
    headers: dict[str, str]
    body: Any
    status: int = 200
    problems: list[str] = field(default_factory=list)


@dataclass
class Answer:
    model: str
    blocks: list[dict[str, Any]]
    stop_reason: str
    stop_sequence: str | None
    usage: dict[str, Any]

    @property
    def text(self) -> str:
        return "".join(block["text"] for block in self.blocks if block["type"] == "text")


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    texts: list[str] = []
    for block in content or ():
        if block.get("type") == "text":
            texts.append(block["text"])
        elif block.get("type") == "tool_result":
            texts += _texts(block.get("content"))
    return texts


def _words(text: str) -> int:
    return len(_WORD.findall(text))


def _tool_input(schema: dict[str, Any]) -> dict[str, Any]:
    samples = {"string": "Paris", "number": 21.5, "integer": 3, "boolean": True}
    properties: dict[str, Any] = schema.get("properties") or {}
    return {name: samples.get(spec.get("type")) for name, spec in properties.items()}


def _answer(body: dict[str, Any], directives: dict[str, str]) -> Answer:
    last = body["messages"][-1]
    content = [] if isinstance(last["content"], str) else last["content"]
    results = [" ".join(_texts(block.get("content"))) for block in content if block["type"] == "tool_result"]
    images = [block["source"] for block in content if block["type"] == "image"]
    tools = body.get("tools") or []
    choice = body.get("tool_choice") or {"type": "auto"}
    blocks: list[dict[str, Any]]
    stop_reason, stop_sequence = "end_turn", None
    if "refusal" in directives:
        blocks, stop_reason = [{"type": "text", "text": REFUSAL_REPLY}], "refusal"
    elif "web_search" in directives:
        blocks = _web_search(body)
    elif tools and choice["type"] != "none" and not results:
        tool = next((t for t in tools if t["name"] == choice.get("name")), tools[0])
        call = {"type": "tool_use", "id": f"toolu_fake{next(_ids):08d}", "name": tool["name"]}
        call["input"] = _tool_input(tool["input_schema"])
        blocks, stop_reason = [{"type": "text", "text": f"I'll call {tool['name']} for you."}, call], "tool_use"
    else:
        if body.get("output_config", {}).get("format"):
            text = json.loads(fixture("message_00.json"))["content"][0]["text"]
        elif results:
            text = "The tool answered: " + "; ".join(results)
        else:
            text = DEFAULT_REPLY
        if images:
            kinds = ", ".join(source.get("media_type", source["type"]) for source in images)
            text = f"I see {len(images)} images ({kinds}). {text}"
        cuts = [(text.find(stop), stop) for stop in body.get("stop_sequences") or () if stop in text]
        if cuts:
            at, stop_sequence = min(cuts)
            text, stop_reason = text[:at], "stop_sequence"
        words = _WORD.findall(text)
        if len(words) > body["max_tokens"]:
            text, stop_reason, stop_sequence = "".join(words[: body["max_tokens"]]), "max_tokens", None
        blocks = [{"type": "text", "text": text}]
    if (body.get("thinking") or {}).get("type") in ("enabled", "adaptive"):
        thought = f"The user wrote {len(body['messages'])} turns; I answer the last one plainly."
        reasoning: list[dict[str, Any]] = [
            {"type": "thinking", "thinking": thought, "signature": signature_of(thought)}
        ]
        if "redacted" in directives:
            reasoning.append({"type": "redacted_thinking", "data": REDACTED_PREFIX + f"{next(_ids):08d}"})
        blocks = reasoning + blocks
    request_text = _texts(body.get("system")) + [t for m in body["messages"] for t in _texts(m["content"])]
    input_tokens = sum(_words(text) for text in request_text) + 4 * len(body["messages"])
    output_tokens = sum(_block_tokens(block) for block in blocks)
    # A cached prefix is part of the prompt: Anthropic counts it apart from ``input_tokens``.
    cache_read = input_tokens // 2 if "cache" in directives else 0
    cache_write = input_tokens // 4 if "cache" in directives else 0
    usage: dict[str, Any] = {
        "input_tokens": input_tokens - cache_read - cache_write,
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": cache_read,
        "output_tokens": output_tokens,
    }
    if "usage" in directives:
        usage["input_tokens"], usage["output_tokens"] = (int(n) for n in directives["usage"].split(","))
    if "web_search" in directives:
        usage["server_tool_use"] = {"web_search_requests": 1}
    return Answer(body["model"], blocks, stop_reason, stop_sequence, usage)


def _block_tokens(block: dict[str, Any]) -> int:
    if block["type"] in ("text", "thinking"):
        return _words(block[block["type"]])
    return 8 + len(json.dumps(block.get("input", {}))) // 4


def _web_search(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A server tool call, its result and an answer citing it, shaped as the Messages API sends them."""
    tool_id = f"srvtoolu_fake{next(_ids):08d}"
    url, title = "https://example.com/weather", "Weather in Paris"
    result = {
        "type": "web_search_result",
        "url": url,
        "title": title,
        "encrypted_content": "ZmFrZQ==",
        "page_age": "2 days ago",
    }
    citation = {
        "type": "web_search_result_location",
        "url": url,
        "title": title,
        "encrypted_index": "ZmFrZS1pbmRleA==",
        "cited_text": "Sunny, 21 degrees.",
    }
    return [
        {"type": "server_tool_use", "id": tool_id, "name": "web_search", "input": {"query": "weather Paris"}},
        {"type": "web_search_tool_result", "tool_use_id": tool_id, "content": [result]},
        {"type": "text", "text": "It is sunny in Paris.", "citations": [citation]},
    ]


def message_body(answer: Answer, message_id: str) -> dict[str, Any]:
    """The answer in the shape of the recorded ``message_00.json``."""
    body: dict[str, Any] = json.loads(fixture("message_00.json"))
    body.update(id=message_id, model=answer.model, content=answer.blocks)
    body.update(stop_reason=answer.stop_reason, stop_sequence=answer.stop_sequence)
    body["usage"].update(answer.usage)
    return body


def sse(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def stream_events(answer: Answer, message_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The answer as the event sequence of the recorded streams (text in word-sized deltas)."""
    start = message_body(answer, message_id)
    start.update(content=[], stop_reason=None, stop_sequence=None)
    start["usage"]["output_tokens"] = 1
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(answer.blocks):
        opening: dict[str, Any]
        if block["type"] == "text":
            opening = {"type": "text", "text": ""}
            deltas = [{"type": "citations_delta", "citation": c} for c in block.get("citations") or ()]
            deltas += [{"type": "text_delta", "text": piece} for piece in _WORD.findall(block["text"])]
        elif block["type"] == "thinking":
            opening = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": piece} for piece in _WORD.findall(block["thinking"])]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        elif "input" not in block:  # redacted thinking, server tool results: whole in their start event
            opening, deltas = block, []
        else:
            opening = {**block, "input": {}}
            arguments = json.dumps(block["input"])
            pieces = [""] + [arguments[i : i + 8] for i in range(0, len(arguments), 8)]
            deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in pieces]
        events.append(
            ("content_block_start", {"type": "content_block_start", "index": index, "content_block": opening})
        )
        if index == 0:
            events.append(("ping", {"type": "ping"}))
        events += [("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}) for d in deltas]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    delta = {"stop_reason": answer.stop_reason, "stop_sequence": answer.stop_sequence}
    usage = {"output_tokens": answer.usage["output_tokens"]}
    events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def error_body(status: int, message: str) -> dict[str, Any]:
    error_type = ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": error_type, "message": message}, "request_id": "req_fake0123456789"}


class BrokenConnection(Exception):
    """Raised inside a streaming answer so the server drops the connection mid-body."""


class FakeAnthropic:
    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.received: list[Received] = []
        self.answers: list[Answer] = []
        self.sent_streams: list[bytes] = []
        self.closing = threading.Event()
        self.app = Starlette(
            routes=[
                Route("/v1/messages", self._messages, methods=["POST"]),
                Route("/{path:path}", self._not_found, methods=["GET", "POST", "PUT", "DELETE"]),
            ]
        )

    def reset(self) -> None:
        self.received.clear()
        self.answers.clear()
        self.sent_streams.clear()

    async def _pause(self, milliseconds: int) -> None:
        """Wait, but give up as soon as the test is over so the server can stop at once."""
        for _ in range(max(1, milliseconds // 20)):
            if self.closing.is_set():
                return
            await asyncio.sleep(0.02)

    async def _not_found(self, request: Request) -> Response:
        self.received.append(Received(str(request.url), dict(request.headers), None, 404))
        return JSONResponse(error_body(404, f"Not found: {request.url.path}"), status_code=404)

    def _refuse(self, received: Received, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        received.status = status
        return JSONResponse(error_body(status, message), status_code=status, headers=headers)

    async def _messages(self, request: Request) -> Response:
        raw = await request.body()
        received = Received(str(request.url), dict(request.headers), None)
        self.received.append(received)
        key = request.headers.get("x-api-key")
        if not key:
            return self._refuse(received, 401, "x-api-key header is required")
        if key != self.api_key:
            return self._refuse(received, 401, "invalid x-api-key")
        version = request.headers.get("anthropic-version")
        if version not in VERSIONS:
            return self._refuse(received, 400, f"anthropic-version: {version!r} is not a valid version")
        if not request.headers.get("content-type", "").startswith("application/json"):
            return self._refuse(received, 400, "content-type must be application/json")
        try:
            received.body = json.loads(raw)
        except ValueError:
            return self._refuse(received, 400, "The request body is not valid JSON")
        received.problems = validate_request(received.body, version)
        if received.problems:
            return self._refuse(received, 400, received.problems[0])
        body: dict[str, Any] = received.body
        last = body["messages"][-1]
        text = " ".join(_texts(last["content"])) if last["role"] == "user" else ""
        directives = {name: value or "" for name, value in _DIRECTIVE.findall(text)}
        if "slow" in directives:
            await self._pause(int(directives["slow"]))
        if "echo_key" in directives:
            return self._refuse(received, 400, f"the key {key} is not allowed to do that")
        if "status" in directives:
            status = int(directives["status"])
            retry = {"retry-after": directives.get("retry_after", DEFAULT_RETRY_AFTER)} if status == 429 else None
            return self._refuse(received, status, f"fake upstream error {status}", retry)
        message_id = f"msg_fake{next(_ids):016d}"
        headers = {"request-id": f"req_fake{next(_ids):016d}"}
        if "replay" in directives:
            return self._replay(directives["replay"], headers)
        answer = _answer(body, directives)
        self.answers.append(answer)
        if not body.get("stream"):
            return JSONResponse(message_body(answer, message_id), headers=headers)
        events = stream_events(answer, message_id)
        return StreamingResponse(self._stream(events, directives), media_type="text/event-stream", headers=headers)

    def _replay(self, name: str, headers: dict[str, str]) -> Response:
        if name.endswith(".json"):
            return JSONResponse(json.loads(fixture(name)), headers=headers)

        async def events() -> AsyncIterator[bytes]:
            for event in fixture(name).split("\n\n"):
                yield (event.strip("\n") + "\n\n").encode()

        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    async def _stream(
        self, events: list[tuple[str, dict[str, Any]]], directives: dict[str, str]
    ) -> AsyncIterator[bytes]:
        """Yield the events one by one; a ``cut``, ``drop`` or ``stream_error`` breaks off after N deltas."""
        break_after: int | None = None
        for name in ("cut", "drop"):
            if name in directives:
                break_after = int(directives[name] or 2)
        if "stream_error" in directives:
            break_after = 2
        deltas = 0
        self.sent_streams.append(b"")
        for name, data in events:
            if name == "content_block_delta":
                if break_after is not None and deltas >= break_after:
                    if "drop" in directives:
                        raise BrokenConnection("the fake drops the connection mid-stream")
                    if "stream_error" in directives:
                        error_type = directives["stream_error"] or "overloaded_error"
                        error = {
                            "type": error_type,
                            "message": "Overloaded" if error_type == "overloaded_error" else error_type,
                        }
                        yield self._sent(sse("error", {"type": "error", "error": error}))
                    return
                deltas += 1
            yield self._sent(sse(name, data))
            await asyncio.sleep(0)

    def _sent(self, event: bytes) -> bytes:
        self.sent_streams[-1] += event
        return event
