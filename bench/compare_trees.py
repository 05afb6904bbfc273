"""Two source trees of glasskey side by side: the same `bench.cost` cells, in alternating rounds.

    python -m bench.compare_trees --before /path/to/old/checkout [--rounds 3] [--seconds 4]

Each tree runs its own `python -m bench.cost` (its own venv at `TREE/.venv`, its own fake upstream,
seed and database), so a redesign that changed the schema or the settings is compared as each tree
runs it. Rounds alternate before/after, so a slow period of this shared machine falls on both; the
medians of the rounds are printed with their ratio, and each round's figures so the spread shows.
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
    rounds: dict[str, list[dict[Cell, dict[str, float]]]] = {"before": [], "after": []}
    for number in range(args.rounds):
        order = ("before", "after") if number % 2 == 0 else ("after", "before")
        for name in order:
            cells = run_cost(trees[name], args.targets, args.concurrency, args.seconds, stream=False)
            cells |= run_cost(trees[name], "glasskey-sqlite", "16", args.seconds, stream=True)
            rounds[name].append(cells)
            print(
                f"round {number + 1} {name}: "
                + "; ".join(
                    f"{c[0]} c={c[1]} {c[2]} {v['rps']:.0f} req/s p50 {v['p50']:.2f} cpu {v['cpu']:.3f}"
                    for c, v in sorted(cells.items())
                ),
                flush=True,
            )
    columns = ("before req/s", "after req/s", "ratio", "before p50", "after p50", "p50 +ms", "before cpu", "after cpu")
    print(f"\n{'cell':34} " + " ".join(f"{name:>12}" for name in columns))
    for cell in sorted(rounds["after"][0]):
        med = {
            name: {k: statistics.median(r[cell][k] for r in rounds[name] if cell in r) for k in ("rps", "p50", "cpu")}
            for name in ("before", "after")
        }
        ratio = med["after"]["rps"] / med["before"]["rps"] if med["before"]["rps"] else float("nan")
        label = f"{cell[0]} c={cell[1]} {cell[2]}"
        before, after = med["before"], med["after"]
        p50_rise = after["p50"] - before["p50"]
        figures = (
            before["rps"],
            after["rps"],
            ratio,
            before["p50"],
            after["p50"],
            p50_rise,
            before["cpu"],
            after["cpu"],
        )
        print(f"{label:34} " + " ".join(f"{value:12.2f}" for value in figures))


if __name__ == "__main__":
    main()
