"""What the lifecycle hands back to the HTTP layer, and the upstream-error attribution."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from glasskey.errors import UpstreamError
from glasskey.providers.base import ProviderError

# A relay writes to its client with two functions the HTTP layer gives it: ``emit`` an event (it may
# be held back to go out with the next ones), and ``flush`` what is held, when the stream is about
# to wait (``providers.sse.PAUSE``).
Emit = Callable[[bytes], Awaitable[None]]
Flush = Callable[[], Awaitable[None]]
Relay = Callable[[Emit, Flush], Awaitable[None]]


# The API whose shape an outcome's body or events are in: OpenAI's, unless an Anthropic route served
# an Anthropic-format request from the caller's own body (``gateway.anthropic_passthrough``).
OPENAI_SHAPE = "openai"


@dataclass
class JSONOutcome:
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    status_code: int = 200
    shape: str = OPENAI_SHAPE


@dataclass
class StreamOutcome:
    """A stream already past its first upstream chunk; ``relay`` sends it and settles it."""

    relay: Relay
    headers: dict[str, str] = field(default_factory=dict)
    shape: str = OPENAI_SHAPE


# orjson refuses integers beyond 64 bits and nesting past 254 levels. A chunk is the upstream's
# data: whatever it holds, it must not end the relay, so one that will not serialise is relayed
# with such integers clamped and such depths cut (the usage it carries was already bounded).
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
SSE_DEPTH_MAX = 200


def sse(payload: dict[str, Any]) -> bytes:
    try:
        return b"data: " + orjson.dumps(payload) + b"\n\n"
    except TypeError:
        return b"data: " + orjson.dumps(serialisable(payload), default=str) + b"\n\n"


def serialisable(value: Any, depth: int = 0) -> Any:
    """``value`` with every integer clamped to 64 bits and anything deeper than 200 levels as null."""
    if depth > SSE_DEPTH_MAX:
        return None
    if isinstance(value, dict):
        return {str(key): serialisable(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [serialisable(item, depth + 1) for item in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return max(_INT64_MIN, min(_INT64_MAX, value))
    return value


SSE_DONE = b"data: [DONE]\n\n"

# The client's own request refused upstream keeps its status; everything else is a bad gateway,
# because a provider's 401/403/404 is the operator's credential or route, never the client's key.
_PASS_THROUGH = {400: 400, 413: 413, 422: 422, 429: 429, 529: 503}


def upstream_error(error: ProviderError) -> UpstreamError:
    status = 504 if error.timeout else _PASS_THROUGH.get(error.status, 502)
    headers = {"retry-after": error.retry_after} if error.retry_after else {}
    return UpstreamError(
        f"{error.provider} answered {error.status}: {error.message}",
        code="upstream_timeout" if error.timeout else f"upstream_{error.status}",
        status_code=status,
        headers=headers,
        details={
            "provider": error.provider,
            "upstream_status": error.status,
            "upstream_type": error.error_type,
        },
    )
