"""The options each provider reads from its routes, so a misspelt one is refused, never ignored.

A route option that no provider reads does nothing, silently: ``fail_rate=1`` on a simulated
route (whose option is ``error_rate``) would leave an operator believing the route fails. Route
creation and change (``routing.routes``, behind the admin API and the CLI) refuse an option its
provider does not know, naming the ones it does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from glasskey.errors import ClientError

TIMEOUTS = ("timeout_connect_ms", "timeout_first_byte_ms", "timeout_chunk_gap_ms", "timeout_total_ms")
# Options every provider honours: the gateway's own, read before any provider is called.
EVERY_PROVIDER = ("strict_params",)

ROUTE_OPTIONS: dict[str, tuple[str, ...]] = {
    "openai": (*TIMEOUTS, "organization", "project"),
    "openai_compatible": (*TIMEOUTS, "headers"),
    "anthropic": (*TIMEOUTS, "anthropic_version", "default_max_tokens"),
    "gemini": TIMEOUTS,
    "simulated": (
        *TIMEOUTS, "latency_ms", "chunk_delay_ms", "output_tokens", "error_rate", "fail_status", "retry_after",
        "timeout", "timeout_ms", "cut_stream_after_chunks", "dimensions",
    ),
}  # fmt: skip


def known_options(provider: str) -> tuple[str, ...]:
    return (*ROUTE_OPTIONS.get(provider, ()), *EVERY_PROVIDER)


def check_options_for(provider: str, options: Mapping[str, Any]) -> None:
    """Refuse (400, ``param`` ``options``) an option that ``provider`` does not read."""
    known = known_options(provider)
    unknown = sorted(name for name in options if name not in known)
    if unknown:
        listed = ", ".join(sorted(known))
        raise ClientError(
            f"unknown option(s) {', '.join(unknown)} for a {provider} route; its options are: {listed}",
            param=f"options.{unknown[0]}",
        )
