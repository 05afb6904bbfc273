"""Every amount and count an operator sets, with its maximum: the limits table of docs/security.md.

The ledger's counters are 64-bit integers (PostgreSQL ``BIGINT``; on SQLite a sum past 2^63 - 1
silently becomes a float and the audit fails). Rather than trusting every caller to stay small,
each value that can reach a counter is bounded where it enters: the admin API's body types (which
also puts the maximum in the OpenAPI document), the CLI's options, and the domain functions behind
both (``top_up``, ``create_route``/``update_route``, ``set_official_prices``, ``KeyPolicy``), so the
dashboard and any future edge get the same refusal: ``ClientError`` 400, ``code: value_too_large``.

Why no counter can overflow: money enters the ledger only by top-ups, and the sum of every top-up
ever made is capped at ``TOP_UPS_TOTAL_MAX_MICROS`` (10^18, about 1/9 of 2^63). Every counter (a
wallet's credits and debits, the revenue accounts, the top-up source, a key's spend) moves by
amounts that come out of that money, so none can pass it. The cap is checked before the top-up,
not in the same statement, so concurrent top-ups may overshoot it by at most one
``TOP_UP_MAX_MICROS`` each: 8,000 of them at once would still stay below 2^63.
"""

from __future__ import annotations

from glasskey.errors import ClientError

COUNTER_MAX = 2**63 - 1
# $1,000,000,000 in one top-up.
TOP_UP_MAX_MICROS = 10**15
# $1,000,000,000,000 ever topped up, over every wallet of the gateway.
TOP_UPS_TOTAL_MAX_MICROS = 10**18
# $1,000,000,000 as a key's total or daily budget.
BUDGET_MAX_MICROS = 10**15
# $100,000 per 1M tokens: over 100 times the dearest list price of the shipped catalog.
PRICE_MAX_MICROS_PER_MTOK = 10**11
RPM_LIMIT_MAX = 1_000_000
# The longest lifetime an org's limits may allow its keys: a century is "no expiry" in practice.
KEY_LIFETIME_MAX_SECONDS = 100 * 366 * 24 * 3600
PRIORITY_MIN = -1_000_000
PRIORITY_MAX = 1_000_000
WEIGHT_MAX = 1_000_000
# Integers inside a route's free-form options: exactly representable as a JSON number anywhere.
OPTION_INTEGER_MAX = 2**53 - 1
OPTIONS_DEPTH_MAX = 8


def counter_overflow(what: str) -> ClientError:
    """The refusal of a movement that would take ``what`` (a ledger or key-budget counter) past ``COUNTER_MAX``."""
    return ClientError(
        f"this movement would take {what} past the largest amount the ledger can count ({COUNTER_MAX:,} micros)",
        code="value_too_large",
    )


def too_large(param: str, maximum: int, minimum: int = 0) -> ClientError:
    return ClientError(f"{param} must be from {minimum:,} to {maximum:,}", code="value_too_large", param=param)


def check_range(param: str, value: int, maximum: int, minimum: int = 0) -> None:
    """Refuse ``value`` outside ``minimum..maximum`` with a 400 naming ``param`` (never echoing the value)."""
    if not minimum <= value <= maximum:
        raise too_large(param, maximum, minimum)


def check_option_numbers(options: object, param: str = "options", depth: int = 0) -> None:
    """Refuse an integer beyond ``OPTION_INTEGER_MAX`` (or nesting deeper than 8) in a route's options."""
    if depth > OPTIONS_DEPTH_MAX:
        raise ClientError(f"{param} nests deeper than {OPTIONS_DEPTH_MAX} levels", param=param)
    if isinstance(options, dict):
        for name, value in options.items():
            check_option_numbers(value, f"{param}.{name}", depth + 1)
    elif isinstance(options, list):
        for position, value in enumerate(options):
            check_option_numbers(value, f"{param}[{position}]", depth + 1)
    elif isinstance(options, int) and not isinstance(options, bool):
        check_range(param, options, OPTION_INTEGER_MAX, -OPTION_INTEGER_MAX)
    elif isinstance(options, float) and not -OPTION_INTEGER_MAX <= options <= OPTION_INTEGER_MAX:
        raise too_large(param, OPTION_INTEGER_MAX, -OPTION_INTEGER_MAX)
