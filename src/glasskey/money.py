"""Integer money and its one rounding rule.

All amounts are integer **micro-dollars** (``1 USD = 1_000_000 micros``); prices are integer
micros per one million tokens. A charge is computed exactly as a sum of ``tokens x price``
and divided by one million once, rounding **up** to the next micro: a request is never billed
less than it consumed, and never more than one micro above it.
"""

from __future__ import annotations

from decimal import Decimal

MICROS_PER_DOLLAR = 1_000_000
TOKENS_PER_PRICE_UNIT = 1_000_000


def charge_micros(*parts: tuple[int, int]) -> int:
    """The charge for ``(tokens, price_per_mtok_micros)`` parts, rounded up once."""
    numerator = 0
    for tokens, price_per_mtok_micros in parts:
        if tokens < 0 or price_per_mtok_micros < 0:
            raise ValueError("tokens and prices are never negative")
        numerator += tokens * price_per_mtok_micros
    return -(-numerator // TOKENS_PER_PRICE_UNIT)


def dollars_to_micros(value: str | int | Decimal) -> int:
    """Parse a dollar amount given as text (``"0.15"``) without ever touching a float."""
    if isinstance(value, float):
        raise TypeError("money is never a float; pass a string or Decimal")
    micros = Decimal(value) * MICROS_PER_DOLLAR
    if not micros.is_finite():
        raise ValueError(f"{value} is not an amount of money")
    if micros != micros.to_integral_value():
        raise ValueError(f"{value} has more precision than one micro-dollar")
    return int(micros)


def format_micros(micros: int) -> str:
    """``1_500_000 -> "1.500000"``: dollars with all six decimals, for APIs and the CLI."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS_PER_DOLLAR)
    return f"{sign}{whole}.{frac:06d}"


def format_usd(micros: int | None) -> str:
    """``150_000 -> "$0.15"``: dollars for people, trailing zeros trimmed to cents, exact to the micro."""
    if micros is None:
        return "-"
    whole, _, fraction = format_micros(micros).partition(".")
    return f"${whole}.{fraction.rstrip('0').ljust(2, '0')}"
