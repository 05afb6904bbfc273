"""The state of one request as it moves through the lifecycle: it becomes the receipt."""

from __future__ import annotations

from dataclasses import dataclass, field

from glasskey.gateway.accounting import Held
from glasskey.providers.base import Usage
from glasskey.receipts.records import Receipt
from glasskey.routing.routes import Route


@dataclass
class Run:
    """The state of one request as it moves through the lifecycle; it becomes the receipt."""

    receipt: Receipt
    started: float
    hold: Held | None = None
    finished: bool = False
    retries: int = 0  # backup attempts holding a share of the retry budget
    notes: list[str] = field(default_factory=list)
    # The most the request can have read and written; usage above them is not believed.
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None

    def use_route(self, route: Route) -> None:
        """The route now serving the request, and the prices its receipt will apply."""
        receipt = self.receipt
        receipt.route_id = route.id
        receipt.provider = route.provider
        receipt.upstream_model = route.upstream_model
        receipt.input_price_per_mtok_micros = route.prices.input_per_mtok_micros
        receipt.output_price_per_mtok_micros = route.prices.output_per_mtok_micros
        receipt.cached_price_per_mtok_micros = route.prices.cached_per_mtok_micros

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
        return headers

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
