"""The state of one request as it moves through the lifecycle, and the hold it took."""

from __future__ import annotations

from dataclasses import dataclass, field

from glasskey.providers.base import Usage
from glasskey.receipts.records import Receipt


@dataclass
class Hold:
    transfer_id: str
    amount_micros: int
    budget_period: str
    wallet_account_id: str
    revenue_account_id: str


@dataclass
class Run:
    """The state of one request as it moves through the lifecycle; it becomes the receipt."""

    receipt: Receipt
    started: float
    hold: Hold | None = None
    finished: bool = False
    retries: int = 0  # backup attempts holding a share of the retry budget
    notes: list[str] = field(default_factory=list)
    # The most the request can have read and written; usage above them is not believed.
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None

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
