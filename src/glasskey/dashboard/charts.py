"""Spend-over-time charts as plain SVG geometry: no chart library, no JavaScript.

``stacked_bars`` turns ``{series: {day: micros}}`` into positioned rectangles, a legend and axis
labels; the template draws them. Pixels are floats, money stays integer micros: every label
and tooltip is written from the micros.
"""

from __future__ import annotations

from dataclasses import dataclass

from glasskey.money import format_usd

# Colours that stay distinct for the common kinds of colour blindness (Okabe and Ito).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00")
OTHER_COLOUR = "#999999"
SERIES_MAX = len(PALETTE)
WIDTH, HEIGHT = 640, 220
PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM = 64, 8, 10, 24


@dataclass(frozen=True)
class Segment:
    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str


@dataclass(frozen=True)
class LegendEntry:
    label: str
    colour: str
    total_micros: int


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    segments: list[Segment]
    legend: list[LegendEntry]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    total_micros: int
    plot_left: int = PLOT_LEFT
    plot_right: int = WIDTH - PLOT_RIGHT
    plot_bottom: int = HEIGHT - PLOT_BOTTOM

    @property
    def empty(self) -> bool:
        return self.total_micros == 0


def nice_ceiling(micros: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten (in micros) at or above ``micros``."""
    if micros <= 1:
        return 1
    scale = 1
    while True:
        for step in (1, 2, 5):
            if step * scale >= micros:
                return step * scale
        scale *= 10


def _ranked(series: dict[str, dict[str, int]], labels: dict[str, str]) -> list[tuple[str, str, dict[str, int]]]:
    """Series by total, largest first; beyond the palette, the rest are summed into "other"."""
    ordered = sorted(series.items(), key=lambda item: (-sum(item[1].values()), item[0]))
    kept = [(labels.get(name, name), PALETTE[i], values) for i, (name, values) in enumerate(ordered[: SERIES_MAX - 1])]
    rest = ordered[SERIES_MAX - 1 :]
    if len(rest) == 1:
        name, values = rest[0]
        kept.append((labels.get(name, name), PALETTE[SERIES_MAX - 1], values))
    elif rest:
        other: dict[str, int] = {}
        for _, values in rest:
            for day, micros in values.items():
                other[day] = other.get(day, 0) + micros
        kept.append((f"{len(rest)} others", OTHER_COLOUR, other))
    return kept


def stacked_bars(days: list[str], series: dict[str, dict[str, int]], labels: dict[str, str] | None = None) -> Chart:
    """One bar per day, stacked by series; ``labels`` names series (a key id by its key's name)."""
    ranked = _ranked(series, labels or {})
    per_day = [sum(values.get(day, 0) for _, _, values in ranked) for day in days]
    top = nice_ceiling(max(per_day, default=0))
    plot_width = WIDTH - PLOT_LEFT - PLOT_RIGHT
    plot_height = HEIGHT - PLOT_TOP - PLOT_BOTTOM
    slot = plot_width / max(1, len(days))
    bar_width = max(1.0, slot * 0.72)
    segments = []
    for index, day in enumerate(days):
        base = float(HEIGHT - PLOT_BOTTOM)
        for label, colour, values in ranked:
            micros = values.get(day, 0)
            if micros <= 0:
                continue
            height = plot_height * micros / top
            base -= height
            x = PLOT_LEFT + index * slot + (slot - bar_width) / 2
            segments.append(Segment(x, base, bar_width, height, colour, f"{day} · {label}: {format_usd(micros)}"))
    legend = [LegendEntry(label, colour, sum(values.values())) for label, colour, values in ranked]
    y_ticks = [
        Tick(HEIGHT - PLOT_BOTTOM - plot_height * share / 2, format_usd(top * share // 2)) for share in (0, 1, 2)
    ]
    every = max(1, len(days) // 6)
    x_ticks = [
        Tick(PLOT_LEFT + index * slot + slot / 2, day[5:])
        for index, day in enumerate(days)
        if (len(days) - 1 - index) % every == 0
    ]
    return Chart(WIDTH, HEIGHT, segments, legend, y_ticks, x_ticks, sum(per_day))
