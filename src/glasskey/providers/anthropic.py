"""The ``anthropic`` provider: OpenAI chat completions served by Anthropic's Messages API.

It owns the HTTP side: the URL (``{base_url}/v1/messages``), the headers (the credential goes in
``x-api-key``, never in a URL), the ``anthropic-version``, and turning Anthropic's error bodies
into ``ProviderError``. The translation itself lives in ``anthropic_translate``.

Route options it reads, besides the timeouts of ``Timeouts.from_options``:

* ``default_max_tokens`` (int, default 4096): Anthropic requires ``max_tokens``; this is sent
  when the client sets neither ``max_tokens`` nor ``max_completion_tokens``.
* ``anthropic_version`` (str, default ``2023-06-01``): the API version header.

Anthropic has no embeddings API, so ``embed`` refuses with a client error.

Besides the ``Provider`` interface, ``messages`` and ``stream_messages`` send an Anthropic-format
body as its caller wrote it and hand back Anthropic's answer and events as they came: the faithful
path of ``/v1/messages`` to an Anthropic route (``gateway.anthropic_passthrough``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from glasskey.errors import ClientError
from glasskey.providers.anthropic_translate import (
    API_VERSION,
    DEFAULT_MAX_TOKENS,
    ERROR_STATUSES,
    PROVIDER_NAME,
    NativeEvent,
    StreamTranslator,
    from_message,
    read_event,
    to_messages_request,
    usage_to_openai,
)
from glasskey.providers.base import ChatResult, EmbeddingResult, ProviderError, RouteTarget, StreamCut
from glasskey.providers.http import Timeouts, UpstreamHTTP, UpstreamHTTPError, resolve_credential, scrub
from glasskey.providers.sse import Pause

MAX_ERROR_MESSAGE_CHARS = 1000


def messages_url(base_url: str) -> str:
    """``https://api.anthropic.com`` (or one ending in ``/v1``) -> its Messages endpoint."""
    base = base_url.rstrip("/")
    return f"{base}/messages" if base.endswith("/v1") else f"{base}/v1/messages"


class AnthropicProvider:
    name: str = PROVIDER_NAME

    def __init__(self, http: UpstreamHTTP) -> None:
        self.http = http

    def _request(self, target: RouteTarget, body: dict[str, Any]) -> dict[str, Any]:
        return to_messages_request(
            body,
            target.upstream_model,
            default_max_tokens=int(target.options.get("default_max_tokens", DEFAULT_MAX_TOKENS)),
            api_version=self._version(target),
        )

    def _version(self, target: RouteTarget) -> str:
        return str(target.options.get("anthropic_version", API_VERSION))

    def _headers(self, target: RouteTarget, caller: Mapping[str, str] | None) -> dict[str, str]:
        """The route's ``anthropic-version``, unless a native caller sent its own (with its ``anthropic-beta``)."""
        headers = {"anthropic-version": self._version(target), "content-type": "application/json"}
        return headers | dict(caller or {})

    def _with_credential(self, headers: dict[str, str], credential: str | None) -> dict[str, str]:
        return headers | {"x-api-key": credential} if credential else headers

    async def chat(self, target: RouteTarget, body: dict[str, Any]) -> ChatResult:
        answer = await self._message(target, self._request(target, body), self._headers(target, None))
        result, usage = from_message(answer, int(time.time()))
        return ChatResult(body=result, usage=usage)

    async def messages(self, target: RouteTarget, body: dict[str, Any], headers: Mapping[str, str]) -> ChatResult:
        """A Messages body sent as it is (its caller has set the upstream model), and Anthropic's answer
        as it came, with its usage for the bill (``usage_to_openai``: cache reads and writes counted in).

        ``headers`` are the caller's ``anthropic-version`` and ``anthropic-beta``; the credential is the route's.
        """
        answer = await self._message(target, body, self._headers(target, headers))
        raw_usage = answer.get("usage")
        usage = usage_to_openai(raw_usage)[1] if isinstance(raw_usage, dict) else None
        return ChatResult(body=answer, usage=usage)

    async def _message(self, target: RouteTarget, request: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        credential = resolve_credential(target.credential, self.http.environ)
        try:
            answer, _ = await self.http.post_json(
                self.name,
                messages_url(target.base_url),
                headers=self._with_credential(headers, credential),
                body=request,
                timeouts=Timeouts.from_options(target.options),
            )
        except UpstreamHTTPError as error:
            raise self._error(
                error.status, error.json(), error.body, error.upstream_headers.get("retry-after"), credential
            ) from None
        if not isinstance(answer, dict) or answer.get("type") != "message":
            # Some proxies answer 200 with an error body; it is still the upstream's error.
            raise self._error(200, answer, b"", None, credential)
        return answer

    async def stream_chat(
        self, target: RouteTarget, body: dict[str, Any], *, pauses: bool = False
    ) -> AsyncIterator[dict[str, Any] | Pause]:
        """Translate each upstream event as it arrives; a stream without ``message_stop`` is cut."""
        request = {**self._request(target, body), "stream": True}
        translator = StreamTranslator(int(time.time()), target.upstream_model)
        async for event in self._events(target, request, self._headers(target, None), pauses):
            if isinstance(event, Pause):
                yield event
                continue
            for chunk in translator.take(event):
                yield chunk

    def stream_messages(
        self, target: RouteTarget, body: dict[str, Any], headers: Mapping[str, str], *, pauses: bool = False
    ) -> AsyncIterator[NativeEvent | Pause]:
        """Anthropic's stream events as they came (``body`` has ``stream: true`` and the upstream model),
        each with its parsed body; an ``error`` event or an end before ``message_stop`` is a ``StreamCut``."""
        return self._events(target, body, self._headers(target, headers), pauses)

    async def _events(
        self, target: RouteTarget, request: dict[str, Any], headers: dict[str, str], pauses: bool
    ) -> AsyncIterator[NativeEvent | Pause]:
        credential = resolve_credential(target.credential, self.http.environ)
        events = self.http.post_sse(
            self.name,
            messages_url(target.base_url),
            headers=self._with_credential(headers, credential),
            body=request,
            timeouts=Timeouts.from_options(target.options),
            pauses=pauses,
        )
        sent = False
        try:
            async for event in events:
                if isinstance(event, Pause):
                    yield event
                    continue
                try:
                    native = read_event(event.event, event.data)
                except StreamCut as cut:
                    cut.message = scrub(cut.message, credential)[:MAX_ERROR_MESSAGE_CHARS]
                    cut.args = (cut.message,)
                    raise
                sent = True
                yield native
                if native.kind == "message_stop":
                    return
        except UpstreamHTTPError as error:
            raise self._error(
                error.status, error.json(), error.body, error.upstream_headers.get("retry-after"), credential
            ) from None
        except ValueError:
            raise StreamCut(self.name, 502, "the upstream sent a malformed stream", error_type="stream_cut") from None
        except ProviderError as error:
            if not sent or isinstance(error, StreamCut):
                raise
            # Once the answer has begun, any break (network, timeout) is a cut stream.
            raise StreamCut(
                self.name, error.status, error.message, error_type=error.error_type, timeout=error.timeout
            ) from None
        finally:
            # Close the upstream response now, whether the stream ended, broke or was abandoned.
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()
        raise StreamCut(self.name, 502, "the upstream stream ended before message_stop", error_type="stream_cut")

    async def embed(self, target: RouteTarget, body: dict[str, Any]) -> EmbeddingResult:
        raise ClientError(
            f"embeddings are not supported by the {self.name} provider: Anthropic has no embeddings API",
            param="model",
        )

    def _error(
        self, status: int, payload: Any, raw: bytes, retry_after: str | None, credential: str | None
    ) -> ProviderError:
        """Anthropic's ``{"type": "error", "error": {"type", "message"}}`` as a ``ProviderError``."""
        detail = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(detail, dict):
            error_type = str(detail.get("type") or "upstream_error")
            message = str(detail.get("message") or f"HTTP {status}")
            if isinstance(payload.get("request_id"), str):
                message += f" (request_id {payload['request_id']})"
        elif status < 300:
            error_type, message = "invalid_response", "the upstream answered with something that is not a message"
        else:
            error_type = "upstream_error"
            message = f"HTTP {status}: " + raw[:200].decode("utf-8", errors="replace").strip()
        if status < 300:
            status = ERROR_STATUSES.get(error_type, 502)
        return ProviderError(
            self.name,
            status,
            scrub(message, credential)[:MAX_ERROR_MESSAGE_CHARS],
            error_type=scrub(error_type, credential)[:100],
            retry_after=retry_after,
        )
