"""kill -9 of one of three gateway processes under 200 concurrent streams, for many seeds.

    python -m bench.kill_streams --seeds 20

The suite runs one seed of ``tests/scale/test_kill_nine.py`` (its time is bounded); this runs the
same test for ``--seeds`` seeds (``GLASSKEY_KILL_SEEDS``) on the same cluster of three
``glasskey serve`` processes on the real PostgreSQL and Redis, and summarises what each seed saw:
which process died, how many of its streams were cut, the interrupted receipts written for them,
the holds that died uncommitted (no receipt, never acknowledged), and the time of each seed. It
writes ``bench/results/kill-<time>/kill.json`` (and pytest's whole output beside it, ``pytest.log``) and
exits non-zero if any seed failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.targets import ROOT

TEST = "tests/scale/test_kill_nine.py"
MARK = "kill-9 outcome "


def run(seeds: int, log_path: Path) -> dict[str, Any]:
    env = {**os.environ, "GLASSKEY_KILL_SEEDS": str(seeds)}
    started = time.monotonic()
    argv = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:randomly", TEST, "-o", "timeout=600"]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    log_path.write_text(done.stdout + done.stderr)  # the whole of pytest's output, failures in full
    outcomes = [json.loads(line.split(MARK, 1)[1]) for line in done.stdout.splitlines() if MARK in line]
    passed = [o["seed"] for o in outcomes]
    return {
        "seeds": seeds,
        "clean": len(outcomes),
        "failed_seeds": [seed for seed in range(seeds) if seed not in passed],
        "pytest_exit": done.returncode,
        "wall_seconds": round(time.monotonic() - started, 1),
        "outcomes": outcomes,
        "tail": done.stdout.splitlines()[-15:] + done.stderr.splitlines()[-5:],
    }


def summary(result: dict[str, Any]) -> str:
    outcomes = result["outcomes"]
    seconds = sorted(o["seconds"] for o in outcomes)
    lines = [
        f"{result['clean']}/{result['seeds']} seeds clean (pytest exit {result['pytest_exit']}), "
        f"{result['wall_seconds']} s in all (cluster start included)",
    ]
    if outcomes:
        lines.append(
            f"per seed: {seconds[0]:.1f}-{seconds[-1]:.1f} s (median {seconds[len(seconds) // 2]:.1f} s); "
            f"streams cut on the killed process {sum(o['victim_streams_cut'] for o in outcomes)}, "
            f"interrupted receipts {sum(o['interrupted_receipts'] for o in outcomes)} "
            f"({sum(o.get('interrupted_charged_for_progress', 0) for o in outcomes)} charged for recorded progress), "
            f"settled before the kill took their [DONE] {sum(o.get('settled_but_cut', 0) for o in outcomes)}, "
            f"holds that died uncommitted (no receipt, not acknowledged) "
            f"{sum(o['uncommitted_holds'] for o in outcomes)} in "
            f"{sum(1 for o in outcomes if o['uncommitted_holds'])} seeds, "
            f"acknowledged {sum(o['acknowledged'] for o in outcomes)} (each with receipt and charge)"
        )
    if result["failed_seeds"]:
        lines.append(f"failed seeds: {result['failed_seeds']}")
        lines.extend(result["tail"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args(argv)
    out_dir = ROOT / "bench" / "results" / ("kill-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))
    out_dir.mkdir(parents=True, exist_ok=True)
    result = run(args.seeds, out_dir / "pytest.log")
    (out_dir / "kill.json").write_text(json.dumps(result, indent=2))
    print(summary(result))
    print(f"results: {out_dir / 'kill.json'}")
    return 0 if result["clean"] == args.seeds and result["pytest_exit"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
