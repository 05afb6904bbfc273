"""How long the ``glasskey`` command takes to answer: ``--help``, and the lists that read the database.

Each command runs in a fresh process, as a person typing it would (so Python's start-up and every
import count), several times; the median and the slowest are printed. The lists run against a
demo data directory seeded first (``glasskey demo --no-serve``), found by the CLI itself.

With ``--before REV``, the source tree of that git revision (``git archive``, nothing checked out)
runs the same commands beside this one, each on its own seeded data directory, alternating run by
run so a busy moment of this shared machine falls on both; the medians are printed side by side.
``--after REV`` measures a revision instead of the working tree (whose unfinished files may differ).

    python -m bench.cli_startup [--runs 7] [--before REV] [--after REV]
"""

from __future__ import annotations

import argparse
import io
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
COMMANDS = (
    ("--help",),
    ("keys", "--help"),
    ("orgs", "list"),
    ("keys", "list"),
    ("wallets", "show", "demo"),
    ("receipts", "list"),
    ("models", "list"),
    ("routes", "list"),
)


def glasskey(*args: str, cwd: Path, source: Path) -> tuple[float, float]:
    """Seconds one ``glasskey ARGS`` of the tree at ``source`` takes, start to exit, and the CPU seconds
    (user and system) its process used; a failure stops the benchmark."""
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "from glasskey.cli import main; main()", *args], cwd=cwd, check=True,
                   capture_output=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(source / "src")})  # fmt: skip
    elapsed = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return elapsed, (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)


def export_revision(revision: str, into: Path) -> Path:
    """The ``src`` tree of ``revision``, written under ``into`` (the working tree is not touched)."""
    archive = subprocess.run(["git", "archive", revision, "src"], cwd=HERE, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--before", default=None, help="a git revision to measure beside this tree")
    parser.add_argument("--after", default=None, help="a git revision to measure instead of this working tree")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        trees = {"after": export_revision(args.after, root / "after-tree") if args.after else HERE}
        if args.before:
            trees = {"before": export_revision(args.before, root / "before-tree"), **trees}
        data = {name: root / f"{name}-data" for name in trees}
        for name, source in trees.items():
            data[name].mkdir()
            glasskey("demo", "--no-serve", cwd=data[name], source=source)
        times: dict[tuple[str, tuple[str, ...]], list[tuple[float, float]]] = {}
        for command in COMMANDS:
            for run in range(args.runs):
                order = list(trees) if run % 2 == 0 else list(reversed(trees))
                for name in order:
                    times.setdefault((name, command), []).append(glasskey(*command, cwd=data[name], source=trees[name]))
        # The wall time is what a person waits; the CPU time moves far less with the machine's load.
        header = f"{'command':<28}" + "".join(f"{name + ' median':>15}{'max':>9}{'cpu':>9}" for name in trees)
        print(header + (f"{'after/before':>14}" if args.before else ""))
        for command in COMMANDS:
            line = f"glasskey {' '.join(command):<19}"
            medians = {}
            for name in trees:
                walls = sorted(wall for wall, _ in times[(name, command)])
                medians[name] = statistics.median(walls)
                cpu = statistics.median(cpu for _, cpu in times[(name, command)])
                line += f"{medians[name]:>13.3f} s{walls[-1]:>7.3f} s{cpu:>7.3f} s"
            if args.before:
                line += f"{medians['after'] / medians['before']:>14.2f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
