"""An SVG line chart of the normalised price series (first aligned date = 100), hand-written.

No plotting library: the chart is a few polylines, and writing them keeps the report free of a
heavy dependency. Symbols and dates are escaped; coordinates are rounded to tenths.
"""

from __future__ import annotations

from html import escape

from glasskey.research.metrics import MetricsTable

WIDTH, HEIGHT, MARGIN = 640, 320, 40
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def normalised_svg(table: MetricsTable) -> str:
    values = [v for points in table.normalised.values() for _, v in points]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    count = max(len(points) for points in table.normalised.values())

    def x(index: int) -> float:
        return MARGIN + (WIDTH - 2 * MARGIN) * index / max(count - 1, 1)

    def y(value: float) -> float:
        return HEIGHT - MARGIN - (HEIGHT - 2 * MARGIN) * (value - low) / span

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="Normalised prices">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<line x1="{MARGIN}" y1="{HEIGHT - MARGIN}" x2="{WIDTH - MARGIN}" y2="{HEIGHT - MARGIN}" stroke="#999"/>',
        f'<line x1="{MARGIN}" y1="{MARGIN}" x2="{MARGIN}" y2="{HEIGHT - MARGIN}" stroke="#999"/>',
        f'<text x="{MARGIN}" y="{HEIGHT - 12}" font-size="11">{escape(table.start)}</text>',
        f'<text x="{WIDTH - MARGIN}" y="{HEIGHT - 12}" font-size="11" text-anchor="end">{escape(table.end)}</text>',
        f'<text x="4" y="{MARGIN}" font-size="11">{high:.0f}</text>',
        f'<text x="4" y="{HEIGHT - MARGIN}" font-size="11">{low:.0f}</text>',
    ]
    if low <= 100 <= high:
        parts.append(
            f'<line x1="{MARGIN}" y1="{y(100):.1f}" x2="{WIDTH - MARGIN}" y2="{y(100):.1f}" '
            'stroke="#ccc" stroke-dasharray="4 3"/>'
        )
    for index, (symbol, points) in enumerate(sorted(table.normalised.items())):
        colour = COLOURS[index % len(COLOURS)]
        path = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, (_, v) in enumerate(points))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}"/>')
        parts.append(
            f'<text x="{WIDTH - MARGIN + 4}" y="{MARGIN + 14 * index}" font-size="11" fill="{colour}">'
            f"{escape(symbol)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
