"""The ``anthropic`` provider: OpenAI chat completions served by Anthropic's Messages API.

It owns the HTTP side: the URL (``{base_url}/v1/messages``), the headers (the credential goes in
``x-api-key``, never in a URL), the ``anthropic-version``, and turning Anthropic's error bodies
into ``ProviderError``. The translation itself lives in ``anthropic_translate``.

Route options it reads, besides the timeouts of ``Timeouts.from_options``:

* ``default_max_tokens`` (int, default 4096): Anthropic requires ``max_tokens``; this is sent
  when the client sets neither ``max_tokens`` nor ``max_completion_tokens``.
* ``anthropic_version`` (str, default ``2023-06-01``): the API version header.

Anthropic has no embeddings API, so ``embed`` refuses with a client error.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from glasskey.errors import ClientError
from glasskey.providers.anthropic_translate import (
    API_VERSION,
    DEFAULT_MAX_TOKENS,
    ERROR_STATUSES,
    PROVIDER_NAME,
    StreamTranslator,
    from_message,
    to_messages_request,
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

    def _headers(self, target: RouteTarget, credential: str | None) -> dict[str, str]:
        headers = {"anthropic-version": self._version(target), "content-type": "application/json"}
        if credential:
            headers["x-api-key"] = credential
        return headers

    async def chat(self, target: RouteTarget, body: dict[str, Any]) -> ChatResult:
        request = self._request(target, body)
        credential = resolve_credential(target.credential, self.http.environ)
        try:
            answer, _ = await self.http.post_json(
                self.name,
                messages_url(target.base_url),
                headers=self._headers(target, credential),
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
        result, usage = from_message(answer, int(time.time()))
        return ChatResult(body=result, usage=usage)

    async def stream_chat(
        self, target: RouteTarget, body: dict[str, Any], *, pauses: bool = False
    ) -> AsyncIterator[dict[str, Any] | Pause]:
        """Translate each upstream event as it arrives; a stream without ``message_stop`` is cut."""
        request = {**self._request(target, body), "stream": True}
        credential = resolve_credential(target.credential, self.http.environ)
        translator = StreamTranslator(int(time.time()), target.upstream_model)
        events = self.http.post_sse(
            self.name,
            messages_url(target.base_url),
            headers=self._headers(target, credential),
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
                    chunks = translator.feed(event.event, event.data)
                except StreamCut as cut:
                    cut.message = scrub(cut.message, credential)[:MAX_ERROR_MESSAGE_CHARS]
                    cut.args = (cut.message,)
                    raise
                for chunk in chunks:
                    sent = True
                    yield chunk
                if translator.stopped:
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
