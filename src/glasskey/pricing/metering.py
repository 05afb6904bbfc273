"""Turning usage into a charge, with the one rounding rule of ``glasskey.money``.

Input tokens include cached input tokens (OpenAI's convention); cached ones are billed at the
cached price and the rest at the input price.
"""

from __future__ import annotations

from glasskey.money import charge_micros
from glasskey.pricing.catalog import Prices
from glasskey.providers.base import Usage


def charge_for(usage: Usage, prices: Prices) -> int:
    cached = min(max(usage.cached_tokens, 0), max(usage.input_tokens, 0))
    uncached = max(usage.input_tokens, 0) - cached
    return charge_micros(
        (uncached, prices.input_per_mtok_micros),
        (cached, prices.cached_per_mtok_micros),
        (max(usage.output_tokens, 0), prices.output_per_mtok_micros),
    )


def max_charge(max_input_tokens: int, max_output_tokens: int, prices: Prices) -> int:
    """The most a request can cost: every input token at the higher of input and cached prices."""
    input_price = max(prices.input_per_mtok_micros, prices.cached_per_mtok_micros)
    return charge_micros((max_input_tokens, input_price), (max_output_tokens, prices.output_per_mtok_micros))
