"""``glasskey serve --workers N``: N processes on one port on PostgreSQL; refused on SQLite, saying why."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import httpx

from conftest_helpers import postgres_schema_url, require_redis
from gateway_fixtures import free_port
from scale_cluster import gateway_environment, output_of, start_serve, stop, wait_ready


def worker_pids(parent: int) -> set[int]:
    """The supervisor's worker processes (multiprocessing's spawned interpreters)."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            status = (proc / "status").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:"))
        if ppid == parent and b"spawn_main" in cmdline:
            found.add(int(proc.name))
    return found


def test_two_workers_serve_one_port_on_postgresql_and_stop_together_with_status_0(tmp_path):
    redis_url = require_redis()
    for url in postgres_schema_url():
        port = free_port()
        environment = gateway_environment(url, redis_url)
        environment["GLASSKEY_HEADER_READ_TIMEOUT_SECONDS"] = "1"
        process = start_serve(environment, port, "--workers", "2", cwd=tmp_path)
        workers: set[int] = set()
        try:
            wait_ready(f"http://127.0.0.1:{port}", process)
            workers = worker_pids(process.pid)
            assert len(workers) == 2
            # Each worker serves with glasskey's protocol: headers are bounded in time and size.
            silent = socket.create_connection(("127.0.0.1", port))
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                answers = [client.get("/readyz", headers={"connection": "close"}) for _ in range(6)]
                too_large = client.get("/readyz", headers={"x-big": "a" * 70_000})
            assert all(answer.status_code == 200 for answer in answers)
            assert all(answer.json()["migrations"]["at_head"] for answer in answers)
            assert too_large.status_code == 431 and too_large.json()["error"]["source"] == "client"
            silent.settimeout(10)
            assert silent.recv(20).startswith(b"HTTP/1.1 408 ")  # nothing sent: cut after a second
            silent.close()
        finally:
            status = stop(process)
        assert status == 0, output_of(tmp_path, port)
        assert not any(Path(f"/proc/{pid}").exists() for pid in workers)  # the workers stopped too


def test_several_workers_on_sqlite_are_refused_with_why_and_what_to_use(tmp_path):
    env = gateway_environment("", "")
    env.pop("GLASSKEY_DATABASE_URL")
    env["GLASSKEY_DATA_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", "from glasskey.cli import main; main()", "serve", "--workers", "2"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "one writer per database file" in done.stderr and "PostgreSQL" in done.stderr
    assert "GLASSKEY_DATABASE_URL=postgresql" in done.stderr
    assert not (tmp_path / "glasskey.db").exists()  # refused before anything was created
