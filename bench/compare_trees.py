"""Two source trees of glasskey side by side: the same `bench.cost` cells, in alternating rounds.

    python -m bench.compare_trees --before /path/to/old/checkout [--rounds 3] [--seconds 4]

Each tree runs its own `python -m bench.cost` (its own venv at `TREE/.venv`, its own fake upstream,
seed and database), so a redesign that changed the schema or the settings is compared as each tree
runs it. Within a round the two trees run each cell back to back, the first of the pair alternating
from cell to cell and round to round, so a slow period of this shared machine (it comes in bursts
of tens of seconds) falls on both of a pair; the ratio is taken within each pair, then the median
of the rounds' ratios is printed beside the medians of each tree's figures, and each round's
figures so the spread shows.
On a busy machine throughput and latency move with the load; the CPU each request costs the
glasskey process (``cpu``, ms per request) moves far less, and is the figure to trust then.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
LINE = re.compile(
    r"^(?P<target>glasskey-\w+)\s+c=(?P<c>\d+)\s+(?P<mode>plain|stream)\s+(?P<rps>[\d.]+) req/s\s+"
    r"p50\s+(?P<p50>[\d.]+) ms\s+p99\s+(?P<p99>[\d.]+) ms\s+cpu (?P<cpu>[\d.]+) ms/request"
)
Cell = tuple[str, int, str]


def run_cost(tree: Path, targets: str, concurrency: str, seconds: float, stream: bool) -> dict[Cell, dict[str, float]]:
    argv = [str(tree / ".venv" / "bin" / "python"), "-m", "bench.cost", "--targets", targets]
    argv += ["--concurrency", concurrency, "--seconds", str(seconds)] + (["--stream"] if stream else [])
    out = subprocess.run(argv, cwd=tree, capture_output=True, text=True, timeout=900, check=True).stdout
    cells: dict[Cell, dict[str, float]] = {}
    for line in out.splitlines():
        match = LINE.match(line)
        if match:
            cell = (match["target"], int(match["c"]), match["mode"])
            cells[cell] = {name: float(match[name]) for name in ("rps", "p50", "p99", "cpu")}
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the other checkout, with its own .venv")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--targets", default="glasskey-sqlite,glasskey-postgres")
    parser.add_argument("--concurrency", default="1,16,64")
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": HERE}
    specs = [(target, int(c), False) for target in args.targets.split(",") for c in args.concurrency.split(",")]
    specs.append(("glasskey-sqlite", 16, True))
    rounds: dict[str, dict[Cell, list[dict[str, float]]]] = {"before": {}, "after": {}}
    for number in range(args.rounds):
        for index, (target, concurrency, stream) in enumerate(specs):
            cell = (target, concurrency, "stream" if stream else "plain")
            order = ("before", "after") if (number + index) % 2 == 0 else ("after", "before")
            pair = {}
            for name in order:
                got = run_cost(trees[name], target, str(concurrency), args.seconds, stream=stream)
                pair[name] = got[cell]
                rounds[name].setdefault(cell, []).append(got[cell])
            print(
                f"round {number + 1} {cell[0]} c={cell[1]} {cell[2]}: "
                + "; ".join(
                    f"{name} {pair[name]['rps']:.0f} req/s p50 {pair[name]['p50']:.2f} cpu {pair[name]['cpu']:.3f}"
                    for name in order
                )
                + f"; ratio {pair['after']['rps'] / pair['before']['rps']:.2f}",
                flush=True,
            )
    columns = ("before req/s", "after req/s", "ratio", "before p50", "after p50", "p50 +ms", "before cpu", "after cpu")
    print(f"\n{'cell':34} " + " ".join(f"{name:>12}" for name in columns))
    for cell in rounds["after"]:
        before_runs, after_runs = rounds["before"][cell], rounds["after"][cell]
        med = {
            name: {k: statistics.median(run[k] for run in runs) for k in ("rps", "p50", "cpu")}
            for name, runs in (("before", before_runs), ("after", after_runs))
        }
        # Within each pair first: the two ran seconds apart, the rounds minutes apart.
        ratio = statistics.median(a["rps"] / b["rps"] for a, b in zip(after_runs, before_runs, strict=True))
        p50_rise = statistics.median(a["p50"] - b["p50"] for a, b in zip(after_runs, before_runs, strict=True))
        label = f"{cell[0]} c={cell[1]} {cell[2]}"
        before, after = med["before"], med["after"]
        figures = [before["rps"], after["rps"], ratio, before["p50"], after["p50"], p50_rise]
        figures += [before["cpu"], after["cpu"]]
        print(f"{label:34} " + " ".join(f"{value:12.2f}" for value in figures))


if __name__ == "__main__":
    main()
