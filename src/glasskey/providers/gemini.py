"""The ``gemini`` provider: Google's Gemini API (``generateContent``, ``streamGenerateContent``,
``batchEmbedContents``) behind glasskey's OpenAI-shaped provider interface.

This module owns the wire: URLs, the ``x-goog-api-key`` header (the key never goes in a URL,
where proxies and access logs would keep it), the stream loop and Google's error format. The
translation of bodies is pure and lives in ``gemini_translate``; the table of what maps to what
is in ``docs/providers/gemini.md``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import orjson

from glasskey.providers.base import ChatResult, EmbeddingResult, ProviderError, RouteTarget, StreamCut
from glasskey.providers.gemini_translate import (
    PROVIDER_NAME,
    StreamTranslator,
    chat_completion,
    chat_request,
    embedding_batches,
    embedding_list,
    embedding_vectors,
)
from glasskey.providers.http import Timeouts, UpstreamHTTP, UpstreamHTTPError, resolve_credential, scrub
from glasskey.providers.sse import Pause

_API_VERSIONS = ("/v1beta", "/v1", "/v1alpha")
_TAG_RE = re.compile(r"<[^>]*>")
_SPACE_RE = re.compile(r"\s+")
_ERROR_TEXT_CHARS = 300


class GeminiProvider:
    """Chat (whole and streamed) and embeddings against one Gemini API base URL per route.

    A route's ``base_url`` is the API host (``https://generativelanguage.googleapis.com``); the
    API version ``/v1beta`` is added unless the base URL already ends with a version.
    """

    name: str = PROVIDER_NAME

    def __init__(self, http: UpstreamHTTP) -> None:
        self.http = http

    async def chat(self, target: RouteTarget, body: dict[str, Any]) -> ChatResult:
        """One ``chat.completion``.

        Raises ``ClientError`` (before any call) for a feature Gemini cannot honour, and
        ``ProviderError`` for an upstream error, a timeout or a network failure.
        """
        request = chat_request(body)
        credential = resolve_credential(target.credential, self.http.environ)
        response = await self._post(target, credential, "generateContent", request)
        if not isinstance(response, dict):
            raise ProviderError(self.name, 502, "the upstream answered with an unexpected body")
        if "error" in response:
            raise _error_of(200, response, {}, credential)
        completion, usage = chat_completion(response, target.upstream_model, int(time.time()))
        return ChatResult(body=completion, usage=usage)

    async def stream_chat(
        self, target: RouteTarget, body: dict[str, Any], *, pauses: bool = False
    ) -> AsyncIterator[dict[str, Any] | Pause]:
        """Translate each upstream event as it arrives; the last chunk carries the usage.

        Raises as ``chat`` does before the first chunk, and ``StreamCut`` when the stream breaks
        after it (an in-stream error, or an end without a finish reason).
        """
        request = chat_request(body)
        credential = resolve_credential(target.credential, self.http.environ)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        translator = StreamTranslator(target.upstream_model, int(time.time()), include_usage)
        events = self.http.post_sse(
            self.name,
            self._url(target, "streamGenerateContent") + "?alt=sse",
            headers=_headers(credential),
            body=request,
            timeouts=Timeouts.from_options(target.options),
            pauses=pauses,
        )
        try:
            async for event in events:
                if isinstance(event, Pause):
                    yield event
                    continue
                if not event.data.strip():
                    continue
                try:
                    payload = orjson.loads(event.data)
                except orjson.JSONDecodeError:
                    raise StreamCut(self.name, 502, "the upstream sent an invalid stream event") from None
                if not isinstance(payload, dict):
                    raise StreamCut(self.name, 502, "the upstream sent an unexpected stream event")
                for chunk in translator.feed(payload):
                    yield chunk
        except UpstreamHTTPError as error:
            raise _error_of(error.status, error.json(), error.upstream_headers, credential, raw=error.body) from None
        except ProviderError as error:
            scrubbed = scrub(error.message, credential)
            if scrubbed == error.message:
                raise
            raise type(error)(
                error.provider,
                error.status,
                scrubbed,
                error_type=error.error_type,
                retry_after=error.retry_after,
                timeout=error.timeout,
            ) from None
        finally:
            # Closing the upstream stream at once releases its connection, even when the
            # client went away mid-answer.
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()
        for chunk in translator.finish():
            yield chunk

    async def embed(self, target: RouteTarget, body: dict[str, Any]) -> EmbeddingResult:
        """Float vectors; Gemini reports no token usage for embeddings, so ``usage`` is None.

        Raises ``ClientError`` for token-array input or an unknown parameter, ``ProviderError``
        for an upstream failure or an answer with the wrong number of vectors.
        """
        batches = embedding_batches(body, target.upstream_model.removeprefix("models/"))
        credential = resolve_credential(target.credential, self.http.environ)
        vectors: list[list[float]] = []
        for batch in batches:
            response = await self._post(target, credential, "batchEmbedContents", batch)
            try:
                found = embedding_vectors(response if isinstance(response, dict) else {})
            except (TypeError, ValueError):
                found = []
            if len(found) != len(batch["requests"]):
                raise ProviderError(self.name, 502, "the upstream answered with the wrong number of embeddings")
            vectors.extend(found)
        return EmbeddingResult(body=embedding_list(vectors, target.upstream_model), usage=None)

    def _url(self, target: RouteTarget, method: str) -> str:
        base = target.base_url.rstrip("/")
        if not base.endswith(_API_VERSIONS):
            base += "/v1beta"
        # Quoted whole, so a model name can never add a path segment or a query.
        model = quote(target.upstream_model.removeprefix("models/"), safe="")
        return f"{base}/models/{model}:{method}"

    async def _post(self, target: RouteTarget, credential: str | None, method: str, request: dict[str, Any]) -> Any:
        try:
            response, _ = await self.http.post_json(
                self.name,
                self._url(target, method),
                headers=_headers(credential),
                body=request,
                timeouts=Timeouts.from_options(target.options),
            )
        except UpstreamHTTPError as error:
            raise _error_of(error.status, error.json(), error.upstream_headers, credential, raw=error.body) from None
        return response


def _headers(credential: str | None) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if credential:
        headers["x-goog-api-key"] = credential
    return headers


def _error_of(status: int, payload: Any, headers: Any, credential: str | None, *, raw: bytes = b"") -> ProviderError:
    """A ``ProviderError`` from Google's ``{"error": {"code", "message", "status", "details"}}``.

    An invalid API key comes back from Google as 400 ``INVALID_ARGUMENT`` with the reason
    ``API_KEY_INVALID``; that is the operator's credential, not the client's request, so it is
    reported as a 401 (which the gateway turns into a 502, never into a client error).
    """
    if isinstance(payload, list) and payload:  # the non-SSE stream method answers with an array
        payload = payload[0]
    detail = payload.get("error") if isinstance(payload, dict) else None
    retry_after = headers.get("retry-after") if headers else None
    if not isinstance(detail, dict):
        text = _SPACE_RE.sub(" ", _TAG_RE.sub(" ", raw.decode("utf-8", errors="replace"))).strip()
        message = f"HTTP {status}" + (f": {text[:_ERROR_TEXT_CHARS]}" if text else "")
        return ProviderError(
            PROVIDER_NAME, status, scrub(message, credential), error_type=f"http_{status}", retry_after=retry_after
        )
    code = detail.get("code")
    if status < 400:  # an error object inside a 2xx body
        status = code if isinstance(code, int) and 400 <= code <= 599 else 502
    message = str(detail.get("message") or f"HTTP {status}")
    error_type = str(detail.get("status") or f"http_{status}")
    if "API_KEY_INVALID" in error_reasons(detail.get("details")):
        status, error_type = 401, "API_KEY_INVALID"
    return ProviderError(
        PROVIDER_NAME,
        status,
        scrub(message, credential),
        error_type=error_type,
        retry_after=retry_after or retry_delay(detail.get("details")),
    )


def retry_delay(details: Any) -> str | None:
    """Seconds from a ``google.rpc.RetryInfo`` detail (``"37s"``, ``"0.5s"``), rounded up."""
    for detail in details if isinstance(details, list) else []:
        if not isinstance(detail, dict) or not str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            continue
        delay = detail.get("retryDelay")
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return str(max(1, math.ceil(float(delay[:-1]))))
            except ValueError:
                return None
    return None


def error_reasons(details: Any) -> set[str]:
    """The ``reason`` of each ``google.rpc.ErrorInfo`` detail (``API_KEY_INVALID`` ...)."""
    return {
        str(detail["reason"])
        for detail in (details if isinstance(details, list) else [])
        if isinstance(detail, dict) and detail.get("reason")
    }
