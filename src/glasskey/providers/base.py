"""The interface every upstream provider implements, and the values that cross it.

A provider receives the client's OpenAI-shaped chat body (already checked by the gateway) and
the ``RouteTarget`` it must call, and answers in OpenAI's shape: a whole ``ChatResult`` or an
async iterator of OpenAI ``chat.completion.chunk`` dicts. Usage travels separately as ``Usage``
so the gateway can bill it. Failures raise ``ProviderError`` with the upstream's own status,
type and message (never a credential).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from glasskey.errors import UpstreamError, storable
from glasskey.providers.sse import Pause


@dataclass(frozen=True)
class RouteTarget:
    """What a provider needs of a route: where to call, which model, with which credential."""

    route_id: str
    provider: str
    base_url: str
    upstream_model: str
    credential: str | None
    options: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:  # the credential never appears in a repr, log line or traceback
        return f"RouteTarget(route_id={self.route_id!r}, provider={self.provider!r}, model={self.upstream_model!r})"


PROVIDER_MESSAGE_MAX_CHARS = 500
PROVIDER_ERROR_TYPE_MAX_CHARS = 100

# A token count an upstream reports is believed up to a trillion tokens: far above any real
# request (the gateway then bounds it by the request's own maximum), and far inside the 64-bit
# integers that orjson, the database and every client can hold, even summed.
TOKEN_COUNT_MAX = 10**12
_DIGITS_MAX = 20


def token_count(value: Any, *, strings: bool = False) -> int | None:
    """A reported token count as an int within +-``TOKEN_COUNT_MAX``, or None if it is not a count.

    Whole floats (``12.0``, ``1e40``) count, clamped; booleans, fractions, objects and arrays do
    not; strings of digits count only when ``strings`` (proto3 JSON writes int64 as strings).
    Negative counts are kept so that the gateway can flag them (``Run.bounded``).
    """
    if type(value) is int and -TOKEN_COUNT_MAX <= value <= TOKEN_COUNT_MAX:
        return value  # nearly every count: one exact type check (a usage read: 4.7 -> 2.4 µs)
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if value != value or not value.is_integer():  # NaN, or a fraction of a token
            return None
        value = int(max(-TOKEN_COUNT_MAX, min(TOKEN_COUNT_MAX, value)))
    elif isinstance(value, str) and strings:
        text = value.strip()
        if not (0 < len(text) <= _DIGITS_MAX and text.lstrip("-").isdigit()):
            return None
        value = int(text)
    if not isinstance(value, int):
        return None
    return max(-TOKEN_COUNT_MAX, min(TOKEN_COUNT_MAX, value))


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0


@dataclass(frozen=True)
class ChatResult:
    body: dict[str, Any]
    usage: Usage | None


@dataclass(frozen=True)
class EmbeddingResult:
    """An OpenAI-shaped ``list`` of float embeddings (the gateway encodes base64 if asked)."""

    body: dict[str, Any]
    usage: Usage | None


class ProviderError(UpstreamError):
    """The upstream failed. ``status`` is the upstream HTTP status (or 504 for a timeout).

    The lifecycle turns it into the client's ``UpstreamError`` (``gateway.outcomes.upstream_error``),
    whose status says what the upstream's means for the client; were one to escape, it would still
    be answered as a bad gateway naming the upstream.
    """

    def __init__(
        self,
        provider: str,
        status: int,
        message: str,
        *,
        error_type: str = "upstream_error",
        retry_after: str | None = None,
        timeout: bool = False,
    ) -> None:
        # An upstream's words end up on the receipt: bounded, and never a NUL the database refuses.
        message = storable(message, PROVIDER_MESSAGE_MAX_CHARS)
        super().__init__(
            message, code="upstream_timeout" if timeout else f"upstream_{status}", status_code=504 if timeout else 502
        )
        self.provider = provider
        self.status = status
        self.message = message
        self.error_type = storable(error_type, PROVIDER_ERROR_TYPE_MAX_CHARS)
        self.retry_after = retry_after
        self.timeout = timeout

    @property
    def retriable(self) -> bool:
        return self.timeout or self.status in (408, 429, 529) or self.status >= 500


class StreamCut(ProviderError):
    """The upstream stream ended in the middle of an answer (no finish reason, no clean end)."""


class Provider(Protocol):
    name: str

    async def chat(self, target: RouteTarget, body: dict[str, Any]) -> ChatResult: ...

    def stream_chat(
        self, target: RouteTarget, body: dict[str, Any], *, pauses: bool = False
    ) -> AsyncIterator[dict[str, Any] | Pause]:
        """Yield OpenAI chunk dicts; the last one carries ``usage`` when the upstream reports it.

        With ``pauses``, ``PAUSE`` comes between chunks wherever the stream is about to wait."""
        ...

    async def embed(self, target: RouteTarget, body: dict[str, Any]) -> EmbeddingResult:
        """Embed ``body["input"]``; a provider without embeddings raises ``ProviderError`` 400."""
        ...
