"""``glasskey demo`` run as a user runs it: a real process, read until it has printed its lines."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


@contextmanager
def running_demo(port: int, *args: str, cwd: Path | None = None) -> Iterator[str]:
    """Start the demo on ``port`` with no GLASSKEY_* or OPENAI_* variables; yields what it printed
    (up to its admin token line) once it answers ``/healthz``, and stops it with Ctrl-C after."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GLASSKEY_", "OPENAI_"))}
    process = subprocess.Popen(
        [sys.executable, "-c", "from glasskey.cli import main; main()", "demo", "--port", str(port), *args],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and process.stdout is not None:
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                break
            lines.append(line)
            if line.startswith("export GLASSKEY_ADMIN_TOKEN="):
                break
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield "".join(lines)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
