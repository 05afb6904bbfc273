"""The state of one request as it moves through the lifecycle: it becomes the receipt."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from glasskey.errors import GlasskeyError
from glasskey.gateway.accounting import Held
from glasskey.gateway.inbound_thinking import for_route
from glasskey.pricing.metering import charge_for
from glasskey.providers.base import Usage
from glasskey.providers.best_effort import dropped_params_header, is_strict, split_best_effort
from glasskey.receipts.records import DROPPED_PARAMS_FLAG, Receipt
from glasskey.routing.routes import Route


@dataclass
class Run:
    """The state of one request as it moves through the lifecycle; it becomes the receipt."""

    receipt: Receipt
    started: float
    hold: Held | None = None
    finished: bool = False
    # False for a failed authentication past its per-minute receipt threshold (keys.auth_throttle):
    # it is counted, not receipted.
    receipted: bool = True
    retries: int = 0  # backup attempts holding a share of the retry budget
    notes: list[str] = field(default_factory=list)
    # The most the request can have read and written; usage above them is not believed.
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    # Best-effort parameters the serving route's provider could not honour, left out of its body.
    dropped_params: tuple[str, ...] = ()
    # The key's strict_params: such parameters are refused (400) instead, as under a strict route.
    strict_params: bool = False

    def use_route(self, route: Route) -> None:
        """The route now serving the request, and the prices its receipt will apply."""
        receipt = self.receipt
        receipt.route_id = route.id
        receipt.provider = route.provider
        receipt.upstream_model = route.upstream_model
        receipt.input_price_per_mtok_micros = route.prices.input_per_mtok_micros
        receipt.output_price_per_mtok_micros = route.prices.output_per_mtok_micros
        receipt.cached_price_per_mtok_micros = route.prices.cached_per_mtok_micros

    def body_for(self, route: Route, body: dict[str, Any]) -> dict[str, Any]:
        """The body for ``route``: its upstream model, and without the best-effort parameters its
        provider cannot honour (listed on the receipt and in a header, with the thinking settings of
        a native endpoint's request that it cannot take: ``inbound_thinking``), unless the key or the
        route asks for ``strict_params`` (then such a parameter is a 400 before any call)."""
        strict = is_strict(route.options, key_strict=self.strict_params)
        body, left_out = for_route(self.receipt.endpoint, route.provider, body)
        sent, self.dropped_params = split_best_effort(route.provider, body, strict=strict, left_out=left_out)
        return {**sent, "model": route.upstream_model}

    def end(
        self,
        route: Route | None,
        usage: Usage,
        *,
        status: str,
        http_status: int,
        error: GlasskeyError | None,
        latency_ms: int,
    ) -> int:
        """Fill in the receipt as the request ends; returns the charge to settle: ``usage`` made
        believable, at the serving route's prices, never above the hold (nothing without one)."""
        receipt, hold = self.receipt, self.hold
        usage = self.bounded(usage)
        receipt.input_tokens, receipt.output_tokens = usage.input_tokens, usage.output_tokens
        receipt.cached_tokens = usage.cached_tokens
        charge = charge_for(usage, route.prices) if route is not None and hold is not None else 0
        if hold is not None and charge > hold.amount_micros:
            self.notes.append("charge_capped_at_hold")
            charge = hold.amount_micros
        receipt.status, receipt.http_status, receipt.latency_ms = status, http_status, latency_ms
        if error is not None:
            receipt.error_source, receipt.error_code = error.source, error.code
            receipt.error_message = error.message[:2000]
        if self.dropped_params:
            self.notes.append(DROPPED_PARAMS_FLAG + ",".join(self.dropped_params))
        receipt.flags = list(dict.fromkeys(self.notes))
        return charge

    def estimated(self, usage: Usage) -> Usage:
        """``usage`` estimated by the gateway (the upstream reported none), as the receipt says."""
        self.receipt.usage_source = "estimated"
        self.notes.append("usage_missing_estimated")
        return usage

    def headers(self, charge_micros: int | None = None) -> dict[str, str]:
        """What a response says of the request: the route that served it, its hold, and (once
        settled) its charge; a stream's headers leave before its charge is known."""
        receipt = self.receipt
        headers = {
            "x-glasskey-route": receipt.route_id or "",
            "x-glasskey-settlement": receipt.settlement or "",
            "x-glasskey-provider": receipt.provider or "",
            "x-glasskey-upstream-model": receipt.upstream_model or "",
            "x-glasskey-hold-micros": str(receipt.hold_micros),
        }
        if charge_micros is not None:
            headers["x-glasskey-charge-micros"] = str(charge_micros)
        return headers | dropped_params_header(self.dropped_params)

    def bounded(self, usage: Usage) -> Usage:
        """Usage an upstream reported, made believable: never negative, never above the request's bounds."""
        values = [usage.input_tokens, usage.output_tokens, usage.cached_tokens]
        if min(values) < 0:
            self.notes.append("negative_usage_clamped")
        input_tokens, output_tokens, cached_tokens = (max(v, 0) for v in values)
        if self.max_input_tokens is not None and input_tokens > self.max_input_tokens:
            self.notes.append("input_usage_above_bound_clamped")
            input_tokens = self.max_input_tokens
        if self.max_output_tokens is not None and output_tokens > self.max_output_tokens:
            self.notes.append("output_usage_above_bound_clamped")
            output_tokens = self.max_output_tokens
        return Usage(input_tokens, output_tokens, min(cached_tokens, input_tokens))
