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

    python -m bench.compare_trees --before OLD --interleave [--windows 16] [--window-seconds 1.5]

``--interleave`` runs both trees' gateways at once instead (each seeded and started by its own
tree's ``bench.targets``, through ``bench/serve_tree.py``), warms each, then loads them in turn with
this tree's load generator, in short windows ordered A B B A ...: a slow spell of the machine lasting
a few seconds then falls on both of a pair, and both trees are measured by the same client. Each
cell prints the medians of each tree's windows, the median of the pairs' throughput ratios with its
quartiles, and the median of their ratios of CPU per request. On this machine three such runs of
one cell minutes apart (PostgreSQL c=16, 16 windows of 1.5 s) gave 0.86, 0.92 and 0.86.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.cost import load_with_cpu
from bench.load import LoadSpec
from bench.targets import MODELS

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


@dataclass(frozen=True)
class Window:
    """One tree's figures over one load window."""

    rps: float
    cpu: float  # ms of the glasskey process's CPU (every thread) per request
    p50: float


def paired_summary(after: list[Window], before: list[Window]) -> dict[str, float]:
    """Window ``i`` of each tree ran back to back: ratios are taken within each pair, then their
    median (and quartiles, to show the spread) is what is reported."""
    if len(after) != len(before) or len(after) < 2:
        raise ValueError("needs at least two pairs of windows")
    ratios = [a.rps / b.rps for a, b in zip(after, before, strict=True)]
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return {
        "before_rps": statistics.median(w.rps for w in before),
        "after_rps": statistics.median(w.rps for w in after),
        "ratio": statistics.median(ratios),
        "ratio_q1": q1,
        "ratio_q3": q3,
        "cpu_ratio": statistics.median(a.cpu / b.cpu for a, b in zip(after, before, strict=True)),
        "p50_rise": statistics.median(a.p50 - b.p50 for a, b in zip(after, before, strict=True)),
    }


class TreeServer:
    """One tree's gateway (``bench/serve_tree.py`` run by that tree's interpreter), up until ``stop``."""

    def __init__(self, tree: Path, engine: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(tree)}
        argv = [str(tree / ".venv" / "bin" / "python"), str(HERE / "bench" / "serve_tree.py"), engine]
        self.process = subprocess.Popen(
            argv, cwd=tree, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.stop()
            raise RuntimeError(f"{tree}: the gateway did not start")
        served = json.loads(line)
        self.url, self.keys, self.pid = served["url"], tuple(served["keys"]), int(served["pid"])

    def window(self, concurrency: int, seconds: float) -> Window:
        spec = LoadSpec(
            url=self.url,
            model=MODELS[0],
            concurrency=concurrency,
            keys=self.keys,
            requests_max=10_000_000,
            duration_s_max=seconds,
        )
        result, spent = load_with_cpu(self.pid, spec)
        served = max(result.requests, 1)
        return Window(result.throughput_rps, 1000 * sum(spent.values()) / served, result.latency_ms.get("p50", 0.0))

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=60)


def interleave(
    trees: dict[str, Path], engines: list[str], concurrencies: list[int], windows: int, seconds: float
) -> None:
    for engine in engines:
        servers: dict[str, TreeServer] = {}
        try:
            for name, tree in trees.items():
                servers[name] = TreeServer(tree, engine)
            for concurrency in concurrencies:
                for server in servers.values():
                    server.window(concurrency, 1.0)  # pools, caches and prepared statements warm
                runs: dict[str, list[Window]] = {"before": [], "after": []}
                for number in range(windows):
                    for name in ("before", "after") if number % 2 == 0 else ("after", "before"):
                        runs[name].append(servers[name].window(concurrency, seconds))
                got = paired_summary(runs["after"], runs["before"])
                print(
                    f"{engine} c={concurrency}: before {got['before_rps']:.0f} req/s,"
                    f" after {got['after_rps']:.0f} req/s;"
                    f" ratio {got['ratio']:.3f} (quartiles {got['ratio_q1']:.3f}-{got['ratio_q3']:.3f}),"
                    f" CPU per request {got['cpu_ratio']:.3f}x, p50 {got['p50_rise']:+.2f} ms"
                    f" ({windows} windows of {seconds:g} s)",
                    flush=True,
                )
        finally:
            for server in servers.values():
                server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the other checkout, with its own .venv")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--targets", default="glasskey-sqlite,glasskey-postgres")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--interleave", action="store_true", help="both gateways up at once, short windows A B B A")
    parser.add_argument("--windows", type=int, default=16, help="with --interleave: windows per tree and cell")
    parser.add_argument("--window-seconds", type=float, default=1.5)
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": HERE}
    if args.interleave:
        engines = [target.removeprefix("glasskey-") for target in args.targets.split(",")]
        concurrencies = [int(c) for c in args.concurrency.split(",")]
        interleave(trees, engines, concurrencies, args.windows, args.window_seconds)
        return
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
