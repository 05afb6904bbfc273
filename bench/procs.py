"""The processes a benchmark starts: each on a loopback port, each stopped by its process id.

``Processes`` remembers every process it started and stops them all (SIGTERM, then SIGKILL after
a grace period) when closed, from a ``finally`` and from ``atexit``, so an error or a Ctrl-C in
the middle of a run leaves nothing behind. A server that forks (LiteLLM may) has its children,
read from ``/proc``, stopped by their own ids too.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

STOP_GRACE_S = 10.0
START_TIMEOUT_S = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def children_of(pid: int) -> list[int]:
    """Every descendant of ``pid``, deepest last, read from /proc."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                found.append(int(child))
                found.extend(children_of(int(child)))
    return found


def rss_kib(pid: int) -> int | None:
    """Resident memory of ``pid`` in KiB (VmRSS of /proc/<pid>/status), or None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int, *, descendants: bool = True) -> float:
    """User + system CPU time of ``pid`` and of every live descendant (its workers), from /proc.

    Fields 14 and 15 of ``/proc/<pid>/stat`` (after the command name, which may hold spaces), in
    clock ticks. A process gone meanwhile counts nothing; measure deltas over live processes only.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for one in (pid, *children_of(pid)) if descendants else (pid,):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of the line)
    return total / ticks


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


class Processes:
    """Starts servers and guarantees they are stopped."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.servers: list[Server] = []
        atexit.register(self.stop_all)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        port: int,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        timeout_s: float = START_TIMEOUT_S,
    ) -> Server:
        """Start ``argv`` and wait until it accepts connections on ``port``."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env or os.environ),
                cwd=cwd,
            )
        server = Server(name, port, process, log_path)
        self.servers.append(server)
        deadline = time.monotonic() + timeout_s
        while not port_open(port):
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode} before it listened:\n{server.log_tail()}")
            if time.monotonic() > deadline:
                self.stop(server)
                raise RuntimeError(f"{name} did not listen on port {port} within {timeout_s:.0f} s")
            time.sleep(0.05)
        return server

    def stop(self, server: Server) -> None:
        """SIGTERM the server and its descendants by pid; SIGKILL whatever is left after the grace."""
        if server in self.servers:
            self.servers.remove(server)
        if server.process.poll() is not None:
            return
        pids = [server.pid, *children_of(server.pid)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.process.wait(timeout=STOP_GRACE_S)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.process.wait(timeout=STOP_GRACE_S)

    def stop_all(self) -> None:
        for server in reversed(list(self.servers)):
            self.stop(server)
