"""The ``openai`` and ``openai_compatible`` providers: OpenAI's own wire format, passed through.

A client already speaks OpenAI's chat format, so the request goes upstream with only the changes
the route requires: ``model`` becomes the route's upstream model and, for streams,
``stream_options.include_usage`` is forced on so the upstream reports what it generated. The
answer comes back as it was sent; a stream is forwarded chunk by chunk as events arrive, and its
usage, wherever the upstream put it, travels in one final ``choices: []`` chunk (the gateway
decides whether the client sees it).

``openai_compatible`` is any host that speaks the same format (vLLM, OpenRouter, resellers, local
servers). Such hosts differ in small ways this module tolerates for both providers: no usage at
all, ``usage`` on every chunk, no ``[DONE]``, error bodies that are a bare string or a ``detail``.
The compatible provider also accepts a route without a credential and extra headers from the
route's ``headers`` option (never an ``Authorization`` header: the credential is the route's).
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import struct
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

import anyio
import orjson

from glasskey.providers.base import (
    ChatResult,
    EmbeddingResult,
    ProviderError,
    RouteTarget,
    StreamCut,
    Usage,
    token_count,
)
from glasskey.providers.http import Timeouts, UpstreamHTTP, UpstreamHTTPError, resolve_credential, scrub
from glasskey.providers.sse import Event, Pause

log = logging.getLogger("glasskey.providers.openai")

MAX_ERROR_MESSAGE_CHARS = 500
# Headers a route's ``headers`` option may never set: the credential, and the framing httpx owns.
RESERVED_HEADERS = frozenset({"authorization", "content-length", "content-type", "host", "transfer-encoding"})


# -- requests ------------------------------------------------------------------------------


def chat_request(body: Mapping[str, Any], upstream_model: str, *, stream: bool) -> dict[str, Any]:
    """The client's chat body with only the route's changes: the model, and usage for streams."""
    upstream = {**body, "model": upstream_model}
    if stream:
        upstream["stream"] = True
        options = body.get("stream_options")
        upstream["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return upstream


def embeddings_request(body: Mapping[str, Any], upstream_model: str) -> dict[str, Any]:
    """The client's embeddings body asking for floats (the gateway encodes base64 itself)."""
    upstream = {**body, "model": upstream_model}
    if "encoding_format" in upstream:
        upstream["encoding_format"] = "float"
    return upstream


# -- usage ---------------------------------------------------------------------------------


_count = token_count  # a name, not a wrapper: a usage reads about 7 counts, and each call costs a frame


def _counts(details: Any) -> dict[str, int] | None:
    """A ``*_tokens_details`` object with its counts only (anything else an upstream put there goes)."""
    if not isinstance(details, dict):
        return None
    return {name: count for name, value in details.items() if (count := _count(value)) is not None}


def usage_body(reported: Any) -> dict[str, Any] | None:
    """The upstream's usage as OpenAI usage of bounded integer counts, or None if it has no counts.

    A usage object missing its prompt or completion count (or sending a string, a fraction, a
    boolean or an object there) is treated as no usage at all, so the gateway estimates (and
    flags) the request instead of billing a silent zero. Counts are clamped to
    ``TOKEN_COUNT_MAX`` and only counts are kept, so the usage always serialises again when it
    is relayed; negative and impossible numbers are kept for the gateway to bound and flag.
    DeepSeek-style ``prompt_cache_hit_tokens`` fills ``prompt_tokens_details.cached_tokens``
    when that is absent.
    """
    if not isinstance(reported, dict):
        return None
    prompt = _count(reported.get("prompt_tokens"))
    completion = _count(reported.get("completion_tokens"))
    if prompt is None or completion is None:
        return None
    body: dict[str, Any] = {
        name: count
        for name, value in reported.items()
        if not name.endswith("_details") and (count := _count(value)) is not None
    }
    body.update(prompt_tokens=prompt, completion_tokens=completion)
    total = _count(reported.get("total_tokens"))
    body["total_tokens"] = prompt + completion if total is None else total
    for name in ("prompt_tokens_details", "completion_tokens_details"):
        details = _counts(reported.get(name))
        if details is not None:
            body[name] = details
    cached = (body.get("prompt_tokens_details") or {}).get("cached_tokens")
    hits = _count(reported.get("prompt_cache_hit_tokens"))
    if cached is None and hits is not None:
        body["prompt_tokens_details"] = {**body.get("prompt_tokens_details", {}), "cached_tokens": hits}
    return body


def usage_of(reported: Any) -> Usage | None:
    """OpenAI usage as the gateway's ``Usage``; ``prompt_tokens`` already includes cached tokens."""
    return _usage(usage_body(reported))


def _usage(body: dict[str, Any] | None) -> Usage | None:
    """The gateway's ``Usage`` of a ``usage_body`` (already bounded: not read a second time)."""
    if body is None:
        return None
    details = body.get("prompt_tokens_details")
    cached = _count(details.get("cached_tokens")) if isinstance(details, dict) else None
    return Usage(body["prompt_tokens"], body["completion_tokens"], cached or 0)


# -- errors --------------------------------------------------------------------------------


def _error_fields(payload: Any) -> tuple[str | None, str | None, Any]:
    """(message, type, code) from OpenAI's error object and the looser shapes compatible hosts send."""
    if not isinstance(payload, dict):
        return None, None, None
    error = payload.get("error", payload)
    if isinstance(error, str):
        return error, None, None
    if not isinstance(error, dict):
        return None, None, None
    message = error.get("message") or error.get("detail") or error.get("msg")
    if isinstance(message, list):  # FastAPI-style servers: a list of validation problems
        message = "; ".join(str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in message)
    error_type = error.get("type")
    code = error.get("code")
    if not isinstance(error_type, str) or not error_type:
        error_type = code if isinstance(code, str) and code else None
    return (str(message) if message else None), error_type, code


def _message(text: str, credential: str | None) -> str:
    return scrub(text, credential)[:MAX_ERROR_MESSAGE_CHARS]


def http_error(provider: str, error: UpstreamHTTPError, credential: str | None) -> ProviderError:
    """A non-2xx upstream answer as ``ProviderError``: its status, type, scrubbed message, retry-after."""
    message, error_type, _ = _error_fields(error.json())
    if message is None:
        snippet = error.body[:200].decode("utf-8", errors="replace").strip()
        message = f"HTTP {error.status}" + (f": {snippet}" if snippet else " with an empty body")
    return ProviderError(
        provider,
        error.status,
        _message(message, credential),
        error_type=_message(error_type, credential) if error_type else "upstream_error",
        retry_after=_retry_after(error.upstream_headers),
    )


def _retry_after(headers: Mapping[str, str]) -> str | None:
    value = headers.get("retry-after")
    if value:
        return value[:64]
    # OpenAI also sends the delay in milliseconds; clients know ``retry-after`` in seconds.
    milliseconds = headers.get("retry-after-ms")
    try:
        return str(max(1, math.ceil(float(milliseconds) / 1000))) if milliseconds else None
    except ValueError:
        return None


def _in_stream_error(provider: str, payload: Any, credential: str | None) -> StreamCut:
    message, error_type, code = _error_fields(payload)
    # Some hosts put the HTTP status they would have answered in ``code``.
    status = code if isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 599 else 502
    return StreamCut(
        provider,
        status,
        _message(message or "the upstream sent an error event mid-stream", credential),
        error_type=_message(error_type, credential) if error_type else "stream_error",
    )


def _body_error(provider: str, payload: dict[str, Any], credential: str | None) -> ProviderError:
    """A 2xx answer that is an error object (some compatible hosts do this)."""
    cut = _in_stream_error(provider, payload, credential)
    return ProviderError(provider, cut.status, cut.message, error_type=cut.error_type)


# -- responses -----------------------------------------------------------------------------


def _with_model(payload: dict[str, Any], upstream_model: str) -> dict[str, Any]:
    """Compatible hosts sometimes omit ``model``; the answer names the upstream model either way."""
    if not payload.get("model"):
        payload["model"] = upstream_model
    return payload


def float_vectors(provider: str, body: dict[str, Any]) -> dict[str, Any]:
    """Decode base64 vectors from a host that ignored ``encoding_format: float``."""
    data = body.get("data")
    if not isinstance(data, list):
        return body
    decoded = []
    for item in data:
        vector = item.get("embedding") if isinstance(item, dict) else None
        if isinstance(vector, str):
            try:
                raw = base64.b64decode(vector, validate=True)
                item = {**item, "embedding": list(struct.unpack(f"<{len(raw) // 4}f", raw))}
            except (binascii.Error, struct.error):
                raise ProviderError(provider, 502, "the upstream sent an undecodable embedding") from None
        decoded.append(item)
    return {**body, "data": decoded}


async def translate_stream(
    provider: str, events: AsyncIterator[Event | Pause], upstream_model: str, credential: str | None
) -> AsyncGenerator[dict[str, Any] | Pause, None]:
    """OpenAI SSE events in, OpenAI chunk dicts out, one by one, usage last.

    Content chunks are yielded as they arrive, with any ``usage`` they carry taken off (some hosts
    report it on every chunk; the last report wins). The usage then goes out in one final
    ``choices: []`` chunk. A stream that ends before every choice has a ``finish_reason``, or that
    carries an error event, raises ``StreamCut`` after what was already yielded (and after the
    running usage, if the host reported one on the way).
    """
    usage_chunk: dict[str, Any] | None = None
    started: set[int] = set()
    finished: set[int] = set()
    async for event in events:
        if isinstance(event, Pause):
            yield event
            continue
        data = event.data.strip()
        if data == "[DONE]":
            break
        if not data:
            continue
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise StreamCut(
                provider, 502, "the upstream sent invalid JSON mid-stream", error_type="invalid_stream"
            ) from None
        if event.event == "error" or (isinstance(chunk, dict) and chunk.get("error")):
            if usage_chunk is not None and started:
                yield usage_chunk  # what a host that counts as it goes generated before the break
            raise _in_stream_error(provider, chunk, credential)
        if not isinstance(chunk, dict):
            raise StreamCut(
                provider, 502, "the upstream sent a chunk that is not an object", error_type="invalid_stream"
            )
        _with_model(chunk, upstream_model)
        choices = chunk.get("choices")
        # Only objects are choices: whatever else a host sends there would break whoever reads them.
        choices = [choice for choice in choices if isinstance(choice, dict)] if isinstance(choices, list) else []
        if "choices" in chunk:
            chunk["choices"] = choices
        reported = chunk.get("usage")
        if reported is not None:
            usage = usage_body(reported)
            if usage is not None:
                envelope = {k: v for k, v in chunk.items() if k not in ("choices", "usage")}
                usage_chunk = {**envelope, "object": "chat.completion.chunk", "choices": [], "usage": usage}
            else:
                log.debug("%s stream: ignored a usage object without token counts", provider)
            if not choices:
                continue  # a usage-only chunk goes out last, once the stream is known to be whole
            chunk["usage"] = None
        for choice in choices:
            # A host that leaves out ``index`` has one choice.
            index = choice.get("index", 0)
            index = index if isinstance(index, int) else 0
            started.add(index)
            if choice.get("finish_reason") is not None:
                finished.add(index)
        yield chunk
    if not started or started - finished:
        if usage_chunk is not None and started:
            # A host that counts as it goes has said what it generated before the break: bill that.
            yield usage_chunk
        raise StreamCut(provider, 502, "the upstream stream ended before the answer finished", error_type="stream_cut")
    if usage_chunk is not None:
        yield usage_chunk


async def _aclose(iterator: AsyncIterator[Any]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


# -- the providers -------------------------------------------------------------------------


class OpenAIProvider:
    """Chat completions and embeddings at ``{base_url}/chat/completions`` and ``/embeddings``.

    ``base_url`` includes the version (``https://api.openai.com/v1``). The credential goes in
    ``Authorization: Bearer``; the route options ``organization`` and ``project`` set OpenAI's
    ``OpenAI-Organization`` and ``OpenAI-Project`` headers.
    """

    name: str = "openai"
    requires_credential: bool = True

    def __init__(self, http: UpstreamHTTP) -> None:
        self.http = http

    def _credential(self, target: RouteTarget) -> str | None:
        credential = resolve_credential(target.credential, self.http.environ)
        if not credential and self.requires_credential:
            raise ProviderError(
                self.name, 502, f"the route {target.route_id} has no credential", error_type="configuration_error"
            )
        return credential or None

    def _headers(self, target: RouteTarget, credential: str | None) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json"}
        for option, header in (("organization", "openai-organization"), ("project", "openai-project")):
            value = target.options.get(option)
            if isinstance(value, str) and value:
                headers[header] = value
        if credential:
            headers["authorization"] = f"Bearer {credential}"
        return headers

    def _url(self, target: RouteTarget, path: str) -> str:
        return f"{target.base_url.rstrip('/')}/{path}"

    async def _post(self, target: RouteTarget, path: str, body: dict[str, Any]) -> dict[str, Any]:
        credential = self._credential(target)
        try:
            payload, _ = await self.http.post_json(
                self.name,
                self._url(target, path),
                headers=self._headers(target, credential),
                body=body,
                timeouts=Timeouts.from_options(target.options),
            )
        except UpstreamHTTPError as error:
            raise http_error(self.name, error, credential) from None
        if not isinstance(payload, dict):
            raise ProviderError(self.name, 502, "the upstream answered with something other than an object")
        if payload.get("error"):
            raise _body_error(self.name, payload, credential)
        return payload

    async def chat(self, target: RouteTarget, body: dict[str, Any]) -> ChatResult:
        payload = await self._post(target, "chat/completions", chat_request(body, target.upstream_model, stream=False))
        if not isinstance(payload.get("choices"), list):
            raise ProviderError(self.name, 502, "the upstream answer has no choices", error_type="invalid_response")
        usage = usage_body(payload.get("usage"))
        if "usage" in payload:
            payload["usage"] = usage  # the client sees the counts that were billed, bounded
        return ChatResult(body=_with_model(payload, target.upstream_model), usage=_usage(usage))

    async def stream_chat(
        self, target: RouteTarget, body: dict[str, Any], *, pauses: bool = False
    ) -> AsyncIterator[dict[str, Any] | Pause]:
        credential = self._credential(target)
        headers = {**self._headers(target, credential), "accept": "text/event-stream"}
        events = self.http.post_sse(
            self.name,
            self._url(target, "chat/completions"),
            headers=headers,
            body=chat_request(body, target.upstream_model, stream=True),
            timeouts=Timeouts.from_options(target.options),
            pauses=pauses,
        )
        chunks = translate_stream(self.name, events, target.upstream_model, credential)
        try:
            async for chunk in chunks:
                yield chunk
        except UpstreamHTTPError as error:
            raise http_error(self.name, error, credential) from None
        finally:
            # Closing early (the client left, or the gateway gave up) releases the upstream at once.
            with anyio.CancelScope(shield=True):
                await _aclose(chunks)
                await _aclose(events)

    async def embed(self, target: RouteTarget, body: dict[str, Any]) -> EmbeddingResult:
        payload = await self._post(target, "embeddings", embeddings_request(body, target.upstream_model))
        if not isinstance(payload.get("data"), list):
            raise ProviderError(self.name, 502, "the upstream answer has no embeddings", error_type="invalid_response")
        usage = payload.get("usage")
        prompt = None
        if isinstance(usage, dict):
            # Embeddings have no output, so a host that reports only the total means the input.
            prompt = _count(usage.get("prompt_tokens"))
            prompt = _count(usage.get("total_tokens")) if prompt is None else prompt
        return EmbeddingResult(
            body=_with_model(float_vectors(self.name, payload), target.upstream_model),
            usage=None if prompt is None else Usage(prompt, 0),
        )


class OpenAICompatibleProvider(OpenAIProvider):
    """Any OpenAI-style host: the credential is optional, and the route may add headers.

    The route option ``headers`` (an object of strings) is sent with every request; it can never
    replace ``Authorization``, ``Content-Type`` or the framing headers.
    """

    name: str = "openai_compatible"
    requires_credential: bool = False

    def _headers(self, target: RouteTarget, credential: str | None) -> dict[str, str]:
        extra = target.options.get("headers")
        headers: dict[str, str] = {}
        if isinstance(extra, dict):
            for key, value in extra.items():
                if not (isinstance(key, str) and isinstance(value, str)) or key.lower() in RESERVED_HEADERS:
                    continue
                if "\r" not in value and "\n" not in value:  # no header can smuggle another
                    headers[key.lower()] = value
        headers.update({"content-type": "application/json", "accept": "application/json"})
        if credential:
            headers["authorization"] = f"Bearer {credential}"
        return headers
