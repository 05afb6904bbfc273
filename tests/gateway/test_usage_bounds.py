"""Usage from an upstream is untrusted: negative or impossible numbers are bounded and flagged."""

from __future__ import annotations

from datetime import UTC, datetime

from glasskey.gateway.lifecycle import Run
from glasskey.providers.base import Usage
from glasskey.receipts.records import Receipt


def run(max_input: int | None = 100, max_output: int | None = 50) -> Run:
    receipt = Receipt(request_id="req_x", endpoint="chat.completions", created_at=datetime.now(UTC))
    return Run(receipt=receipt, started=0.0, max_input_tokens=max_input, max_output_tokens=max_output)


def test_believable_usage_passes_unchanged():
    r = run()
    assert r.bounded(Usage(80, 40, 10)) == Usage(80, 40, 10)
    assert r.notes == []


def test_negative_usage_is_clamped_to_zero_and_flagged():
    r = run()
    assert r.bounded(Usage(-5, 40, -1)) == Usage(0, 40, 0)
    assert r.notes == ["negative_usage_clamped"]


def test_usage_above_the_request_bounds_is_billed_at_the_bound_and_flagged():
    r = run()
    assert r.bounded(Usage(1_000_000, 999, 2_000_000)) == Usage(100, 50, 100)
    assert r.notes == ["input_usage_above_bound_clamped", "output_usage_above_bound_clamped"]


def test_cached_tokens_never_exceed_input_tokens():
    assert run(max_input=None, max_output=None).bounded(Usage(10, 5, 30)) == Usage(10, 5, 10)
