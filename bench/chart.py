"""The chart of docs/performance.md: throughput and added latency per concurrency, for each target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.analysis import ORDER, by_cell, cell_median, difference, paired, targets_of

COLORS = {
    "direct": "#777777",
    "bare": "#1f77b4",
    "bare-aiohttp": "#ff7f0e",
    "bare-httpx2": "#9467bd",
    "glasskey-sqlite": "#2ca02c",
    "glasskey-postgres": "#17becf",
    "litellm": "#d62728",
}


def chart(results: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    cells = by_cell(results.get("matrix", []))
    targets = targets_of(cells, ORDER)
    concurrencies = sorted({c[3] for c in cells})
    if not concurrencies:
        return None
    figure, axes = plt.subplots(2, 2, figsize=(11, 8), constrained_layout=True)
    for row, stream in enumerate((False, True)):
        for target in targets:
            xs, throughput, added = [], [], []
            for concurrency in concurrencies:
                cell = (target, 0, stream, concurrency)
                if cell not in cells:
                    continue
                xs.append(concurrency)
                throughput.append(cell_median(cells, cell, "throughput_rps"))
                added.append(paired(cells, cell, ("direct", 0, stream, concurrency), "latency.p50", difference))
            if not xs:
                continue
            style = {"marker": "o", "color": COLORS.get(target), "label": target}
            axes[row][0].plot(xs, throughput, **style)
            if target != "direct":
                axes[row][1].plot(xs, [max(a, 0.01) for a in added], **style)
        kind = "streaming" if stream else "non-streaming"
        axes[row][0].set_title(f"Throughput, {kind}, 0 ms upstream")
        axes[row][0].set_ylabel("requests per second (log)")
        axes[row][1].set_title(f"Added p50 latency over the upstream, {kind}")
        axes[row][1].set_ylabel("milliseconds (log)")
        for axis in axes[row]:
            axis.set_xscale("log", base=2)
            axis.set_yscale("log")
            axis.set_xticks(concurrencies, [str(c) for c in concurrencies])
            axis.set_xlabel("concurrency (closed-loop clients)")
            axis.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncol=len(labels))
    meta = results.get("meta", {})
    figure.suptitle(f"glasskey {meta.get('glasskey_commit', '').split(' ')[0]} — {meta.get('started_at', '')}")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
