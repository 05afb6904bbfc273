"""What the lifecycle hands back to the HTTP layer, and the upstream-error attribution."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from glasskey.errors import UpstreamError
from glasskey.providers.base import ProviderError

Emit = Callable[[bytes], Awaitable[None]]


@dataclass
class JSONOutcome:
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    status_code: int = 200


@dataclass
class StreamOutcome:
    """A stream already past its first upstream chunk; ``relay`` sends it and settles it."""

    relay: Callable[[Emit], Awaitable[None]]
    headers: dict[str, str] = field(default_factory=dict)


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


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
