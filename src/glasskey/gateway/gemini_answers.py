"""OpenAI-format answers in, Gemini-format answers out: the response half of the Gemini inbound API.

The lifecycle answers in OpenAI's shapes; a Gemini client reads ``GenerateContentResponse``,
``EmbedContentResponse`` and Google's error object. Everything here is pure: ``generate_response``
for a ``chat.completion``, ``StreamAnswer`` for the relay's SSE lines (one ``data:`` event in, zero
or more ``data:`` events out), ``embed_response``, and ``google_error`` for a ``GlasskeyError``.
The request half is ``gateway.gemini_inbound``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from glasskey.errors import GlasskeyError, error_body
from glasskey.gateway.anthropic_inbound_reply import reasoning_of
from glasskey.gateway.outcomes import SSE_DONE
from glasskey.pricing.catalog import Model

_FINISH_REASONS = {
    "stop": "STOP",
    "tool_calls": "STOP",  # Gemini ends a turn of function calls with STOP too
    "function_call": "STOP",
    "length": "MAX_TOKENS",
    "content_filter": "SAFETY",
}
# google.rpc.Code names for the HTTP statuses the gateway answers with (google/rpc/code.proto).
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    402: "FAILED_PRECONDITION",  # the wallet's balance: the system is not in a state to serve
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    422: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
GENERATE_METHODS = ("generateContent", "streamGenerateContent", "countTokens")
ERROR_DOMAIN = "glasskey"
GLASSKEY_ERROR_TYPE = "type.googleapis.com/glasskey.v1.Error"


# -- generateContent --------------------------------------------------------------------------


def usage_metadata(usage: Any) -> dict[str, Any]:
    """``usageMetadata`` of an OpenAI usage: reasoning tokens are Gemini's thoughts, apart from output."""
    if not isinstance(usage, dict):
        return {}
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    thoughts = int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)
    metadata: dict[str, Any] = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": max(completion - thoughts, 0),
        "totalTokenCount": int(usage.get("total_tokens") or prompt + completion),
    }
    if cached:
        metadata["cachedContentTokenCount"] = cached
    if thoughts:
        metadata["thoughtsTokenCount"] = thoughts
    return metadata


def function_call_part(call: dict[str, Any]) -> dict[str, Any]:
    """A ``functionCall`` part of one OpenAI tool call (its id kept, so the answer can name it)."""
    function = call.get("function") or {}
    raw = function.get("arguments") or "{}"
    try:
        args = orjson.loads(raw)
    except orjson.JSONDecodeError:
        args = None
    if not isinstance(args, dict):
        # Gemini's args are an object; what the model wrote is kept rather than lost.
        args = {"arguments": raw}
    part: dict[str, Any] = {"functionCall": {"name": str(function.get("name") or ""), "args": args}}
    if call.get("id"):
        part["functionCall"]["id"] = str(call["id"])
    signature = ((call.get("extra_content") or {}).get("google") or {}).get("thought_signature")
    if isinstance(signature, str):
        part["thoughtSignature"] = signature
    return part


def _candidate(index: int, parts: list[dict[str, Any]], finish_reason: Any = None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": index}
    if finish_reason is not None:
        candidate["finishReason"] = _FINISH_REASONS.get(str(finish_reason), "OTHER")
    return candidate


def _envelope(completion: dict[str, Any], candidates: list[dict[str, Any]]) -> dict[str, Any]:
    response: dict[str, Any] = {"candidates": candidates}
    if completion.get("model"):
        response["modelVersion"] = str(completion["model"])
    if completion.get("id"):
        response["responseId"] = str(completion["id"]).removeprefix("chatcmpl-")
    return response


def generate_response(completion: dict[str, Any]) -> dict[str, Any]:
    """The ``GenerateContentResponse`` of a ``chat.completion``."""
    candidates = []
    for position, choice in enumerate(completion.get("choices") or []):
        message = choice.get("message") or {}
        text = message.get("content") or message.get("refusal")
        parts: list[dict[str, Any]] = [{"text": text}] if text else []
        reasoning = reasoning_of(message)
        if reasoning:  # Gemini puts its thought summary first, as a ``thought`` part
            parts.insert(0, {"text": reasoning, "thought": True})
        parts.extend(function_call_part(call) for call in message.get("tool_calls") or [])
        candidates.append(_candidate(choice.get("index", position), parts, choice.get("finish_reason")))
    response = _envelope(completion, candidates)
    metadata = usage_metadata(completion.get("usage"))
    if metadata:
        response["usageMetadata"] = metadata
    return response


# -- streamGenerateContent --------------------------------------------------------------------


def sse_event(payload: dict[str, Any]) -> bytes:
    """One event of ``streamGenerateContent?alt=sse`` (Google ends each with CRLF CRLF)."""
    return b"data: " + orjson.dumps(payload) + b"\r\n\r\n"


@dataclass
class _OpenCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)
    extra_content: Any = None

    def whole(self) -> dict[str, Any]:
        call = {"id": self.id, "function": {"name": self.name, "arguments": "".join(self.arguments)}}
        return {**call, "extra_content": self.extra_content} if self.extra_content else call


class StreamAnswer:
    """Translates the relay's OpenAI SSE events into Gemini's, one ``feed`` per event.

    Text goes out as it comes. Gemini sends a function call whole, so OpenAI's argument
    fragments are gathered and sent with the candidate's finish. The finishing events wait for
    the usage event (the lifecycle asks every upstream for one) so the last event carries
    ``usageMetadata``, as Gemini's does. ``[DONE]`` is not part of Gemini's stream and is
    dropped; an in-band error becomes Google's error object, which the SDK raises.
    """

    def __init__(self) -> None:
        self._completion: dict[str, Any] = {}
        self._calls: dict[int, dict[int, _OpenCall]] = {}
        self._finishing: list[dict[str, Any]] = []
        self._usage: Any = None

    def feed(self, event: bytes) -> list[bytes]:
        if event == SSE_DONE:
            return self._flush()
        payload = orjson.loads(event.removeprefix(b"data: "))
        if "error" in payload:
            return [*self._flush(), sse_event(google_error_of_body(payload["error"]))]
        if not self._completion:
            self._completion = {"id": payload.get("id"), "model": payload.get("model")}
        # Some OpenAI-compatible hosts put usage on every chunk; the last one seen is the total.
        self._usage = payload.get("usage") or self._usage
        out: list[bytes] = []
        for choice in payload.get("choices") or ():
            out.extend(self._choice(choice))
        if payload.get("usage") and not payload.get("choices"):
            out.extend(self._flush())
        return out

    def _choice(self, choice: dict[str, Any]) -> list[bytes]:
        index = int(choice.get("index") or 0)
        delta = choice.get("delta") or {}
        for fragment in delta.get("tool_calls") or ():
            call = self._calls.setdefault(index, {}).setdefault(int(fragment.get("index") or 0), _OpenCall())
            function = fragment.get("function") or {}
            call.id = call.id or str(fragment.get("id") or "")
            call.name += str(function.get("name") or "")
            call.arguments.append(str(function.get("arguments") or ""))
            call.extra_content = call.extra_content or fragment.get("extra_content")
        out = []
        reasoning = reasoning_of(delta)
        if reasoning:
            out.append(
                sse_event(_envelope(self._completion, [_candidate(index, [{"text": reasoning, "thought": True}])]))
            )
        text = delta.get("content") or delta.get("refusal")
        if text:
            out.append(sse_event(_envelope(self._completion, [_candidate(index, [{"text": text}])])))
        if choice.get("finish_reason") is not None:
            calls = self._calls.pop(index, {})
            parts = [function_call_part(calls[position].whole()) for position in sorted(calls)]
            self._finishing.append(_candidate(index, parts, choice["finish_reason"]))
        return out

    def _flush(self) -> list[bytes]:
        """The held finishing events; the usage, when known, rides on the last one."""
        finishing, self._finishing = self._finishing, []
        metadata = usage_metadata(self._usage)
        self._usage = None
        if not finishing and not metadata:
            return []
        events = [_envelope(self._completion, [candidate]) for candidate in finishing] or [
            _envelope(self._completion, [])
        ]
        if metadata:
            events[-1]["usageMetadata"] = metadata
        return [sse_event(event) for event in events]


# -- embeddings -------------------------------------------------------------------------------


def embed_response(embeddings: dict[str, Any], *, batch: bool) -> dict[str, Any]:
    """``EmbedContentResponse`` (one) or ``BatchEmbedContentsResponse`` (many) of an OpenAI list."""
    vectors = [{"values": item["embedding"]} for item in sorted(embeddings["data"], key=lambda item: item["index"])]
    return {"embeddings": vectors} if batch else {"embedding": vectors[0]}


def model_entry(model: Model) -> dict[str, Any]:
    """A ``Model`` of ``GET /v1beta/models`` for a catalog model."""
    methods = ["embedContent", "batchEmbedContents"] if model.kind == "embedding" else list(GENERATE_METHODS)
    return {
        "name": f"models/{model.name}",
        "baseModelId": model.name,
        "version": model.price_date,
        "displayName": model.name,
        "description": f"{model.vendor} model {model.name}, served through glasskey",
        "inputTokenLimit": model.context_window_tokens,
        "outputTokenLimit": model.max_output_tokens,
        "supportedGenerationMethods": methods,
    }


# -- errors -----------------------------------------------------------------------------------


def status_name(status_code: int) -> str:
    if status_code in _STATUS_NAMES:
        return _STATUS_NAMES[status_code]
    return "INTERNAL" if status_code >= 500 else "FAILED_PRECONDITION"


def google_error(error: GlasskeyError, request_id: str) -> dict[str, Any]:
    """Google's error object for a refusal, its status and retry advice kept.

    ``details`` holds an ``ErrorInfo`` (reason, ``request_id`` and ``source`` in its metadata, as
    Google's own API names a failure), a ``BadRequest`` naming the field when there is one, a
    ``RetryInfo`` when the gateway advises a wait, and the brief's whole error object.
    """
    body = error_body(error, request_id)["error"]
    return _google_error(error.status_code, body, error.headers.get("retry-after"))


def google_error_of_body(body: dict[str, Any]) -> dict[str, Any]:
    """The same for an error the relay already rendered in band (mid-stream, after the headers).

    The in-band object has no HTTP status; a mid-stream break is the upstream's or the gateway's.
    """
    code = body.get("code")
    status_code = 500 if code == "internal_error" else 504 if code == "upstream_timeout" else 502
    return _google_error(status_code, body, None)


def _google_error(status_code: int, body: dict[str, Any], retry_after: str | None) -> dict[str, Any]:
    metadata = {"request_id": str(body.get("request_id")), "source": str(body.get("source"))}
    if body.get("code"):
        metadata["code"] = str(body["code"])
    details: list[dict[str, Any]] = [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": str(body.get("code") or "error").upper(),
            "domain": ERROR_DOMAIN,
            "metadata": metadata,
        }
    ]
    if body.get("param"):
        violation = {"field": str(body["param"]), "description": str(body.get("message"))}
        details.append({"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [violation]})
    if retry_after and retry_after.isdigit():
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after}s"})
    details.append({"@type": GLASSKEY_ERROR_TYPE, **body})
    return {
        "error": {
            "code": status_code,
            "message": str(body.get("message")),
            "status": status_name(status_code),
            "details": details,
        }
    }
