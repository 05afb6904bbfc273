"""How long the ``glasskey`` command takes to answer: ``--help``, and a list that reads the database.

Each command runs in a fresh process, as a person typing it would (so Python's start-up and every
import count), several times; the median and the slowest are printed. The list runs against a
demo data directory seeded first (``glasskey demo --no-serve``), found by the CLI itself.

    python -m bench.cli_startup [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = (("--help",), ("keys", "--help"), ("orgs", "list"), ("keys", "list"))


def glasskey(*args: str, cwd: Path) -> float:
    """Seconds one ``glasskey ARGS`` takes, start to exit; a failure stops the benchmark."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "from glasskey.cli import main; main()", *args], cwd=cwd, check=True,
                   capture_output=True, env={"PATH": "/usr/bin:/bin"})  # fmt: skip
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as directory:
        cwd = Path(directory)
        glasskey("demo", "--no-serve", cwd=cwd)
        for command in COMMANDS:
            times = sorted(glasskey(*command, cwd=cwd) for _ in range(runs))
            print(f"glasskey {' '.join(command):<12} median {statistics.median(times):.3f} s  max {times[-1]:.3f} s")


if __name__ == "__main__":
    main()
