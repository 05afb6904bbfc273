"""How the dashboard writes figures for people: money, counts, rates, times and durations.

Money is shown with ``glasskey.money.format_usd`` (exact to the micro) and every amount keeps
its integer micros in a ``data-micros`` attribute, so a test can compare pages with the API.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment
from markupsafe import Markup, escape

from glasskey.money import format_usd


def usd(micros: int | None) -> str:
    return format_usd(micros)


def money(micros: int | None) -> Markup:
    """An amount as ``<span class="money" data-micros="…">$…</span>``."""
    if micros is None:
        return Markup('<span class="money none">-</span>')
    return Markup('<span class="money" data-micros="{}">{}</span>').format(int(micros), format_usd(micros))


def count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def rate(value: float | None) -> str:
    """A share from 0 to 1 as a percentage (``0.975 -> "97.5%"``)."""
    if value is None:
        return "-"
    return f"{value * 100:.1f}%".replace(".0%", "%")


def failure_rate(failed: int, total: int) -> str:
    return "-" if total == 0 else rate(failed / total)


def share_of(price_micros: int, official_micros: int) -> str:
    """A route price as a share of the official price, in whole percent (integer arithmetic)."""
    if official_micros <= 0:
        return "-"
    return f"{price_micros * 100 // official_micros}%"


def when(value: datetime | str | None) -> str:
    if value is None or value == "":
        return "-"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def day(value: datetime | str | None) -> str:
    return when(value)[:10]


def duration_ms(value: int | float | None) -> str:
    if value is None:
        return "-"
    return f"{int(value):,} ms"


def ago(seconds: float | None) -> str:
    """How long ago, for people: ``70 s ago``, ``5 min ago``, ``2 h ago``."""
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{int(seconds)} s ago"
    if seconds < 7200:
        return f"{int(seconds // 60)} min ago"
    return f"{int(seconds // 3600)} h ago"


def pretty(value: Any) -> str:
    """Words for plain values: booleans as on/off, ``None`` as a dash."""
    if value is True:
        return "on"
    if value is False:
        return "off"
    if value is None:
        return "-"
    return str(value)


def words(value: str) -> Markup:
    """Explanation text with its `code` spans rendered as code."""
    parts = str(escape(value)).split("`")
    html = "".join(f"<code>{part}</code>" if i % 2 else part for i, part in enumerate(parts))
    return Markup(html)


def install(env: Environment) -> None:
    env.filters.update(
        usd=usd,
        money=money,
        count=count,
        rate=rate,
        share_of=share_of,
        when=when,
        day=day,
        ms=duration_ms,
        ago=ago,
        pretty=pretty,
        words=words,
    )
    env.globals.update(failure_rate=failure_rate)
