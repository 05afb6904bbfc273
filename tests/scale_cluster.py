"""Several real ``glasskey serve`` processes on one PostgreSQL schema and the real Redis, for tests/scale.

Each process is started as an operator starts it (the CLI, settings in ``GLASSKEY_*`` variables), on
its own port, as if on its own host. The test process opens the same database to seed it and to
audit the ledger at the end. Redis can be reached through a ``tcp_forwarder.Forwarder`` so a test
takes Redis away from the gateways only (other tests share the server).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from conftest_helpers import TEST_ENCRYPTION_KEY, make_settings
from gateway_fixtures import free_port, seed
from glasskey.ledger import audit
from glasskey.services import Services, build_services

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
FAILING_ROUTE = "rt-gemini-2.5-flash-routed"  # answers 500: traffic opens its breaker
SLOW_ROUTE = "rt-claude-sonnet-4-5-routed"  # streams slowly: in flight when SIGTERM comes


class Keys(dict[str, Any]):
    """name -> (key id, full key); ``race_org`` -> the org id of the wallet of the race."""


START_TIMEOUT_SECONDS = 60


def gateway_environment(database_url: str, redis_url: str, **settings: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GLASSKEY_", "OPENAI_"))}
    values = {
        "database_url": database_url,
        "redis_url": redis_url,
        "admin_token": ADMIN_TOKEN,
        "key_pepper": "pepper-for-tests-0123456789abcdef",
        "encryption_key": TEST_ENCRYPTION_KEY,
        "allow_private_upstreams": "true",
        "log_level": "warning",
        **settings,
    }
    env.update({f"GLASSKEY_{name.upper()}": str(value) for name, value in values.items()})
    return env


def start_serve(env: dict[str, str], port: int, *args: str, cwd: Path) -> subprocess.Popen[str]:
    """``glasskey serve`` on ``port``; its output goes to ``cwd/serve-PORT.log`` (a pipe nobody reads
    would fill up under an outage's warnings and stall the gateway on its own logging)."""
    with (cwd / f"serve-{port}.log").open("w") as log:
        return subprocess.Popen(
            [sys.executable, "-c", "from glasskey.cli import main; main()", "serve", "--port", str(port), *args],
            env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip


def output_of(cwd: Path, port: int) -> str:
    """What the ``glasskey serve`` started by ``start_serve`` on ``port`` printed."""
    return (cwd / f"serve-{port}.log").read_text()


def wait_ready(base_url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"glasskey serve exited with {process.returncode} (its serve-PORT.log says why)")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError("glasskey serve did not become ready")


def stop(process: subprocess.Popen[str], timeout_s: float = 20) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(timeout=5)


@dataclass
class Cluster:
    services: Services  # the test's own view of the database: seeding and the audit
    ports: list[int]
    processes: list[subprocess.Popen[str]]
    seeded: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # the gateways' environment, for a restart
    cwd: Path = Path()

    def url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.ports[index]}"

    def admin(self, index: int) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.url(index)}/admin/api", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10
        )

    def restart(self, index: int) -> None:
        """Start process ``index`` again on its port (after it died), as an operator's supervisor would."""
        assert self.processes[index].poll() is not None, "restart only a process that is gone"
        self.processes[index] = start_serve(self.env, self.ports[index], cwd=self.cwd)
        wait_ready(self.url(index), self.processes[index])

    def audit_ok(self) -> None:
        with self.services.db.read() as conn:
            report = audit(conn)
        report.raise_if_broken()
        assert report.receipt_charges_micros == report.posted_charges_micros


@contextlib.contextmanager
def cluster(
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    *,
    processes: int = 3,
    wallet_micros: int = 50_000_000,
    route_options: dict[str, Any] | None = None,
    prepare: Callable[[Services, dict[str, str]], None] | None = None,
    gateway_database_url: str = "",
    **settings: Any,
) -> Iterator[Cluster]:
    """Seed the schema (then ``prepare`` it), start ``processes`` gateways on it; all stopped with SIGTERM after.

    ``gateway_database_url``: how the gateways reach the database (through a forwarder, say), if not
    as the test does."""
    services = build_services(make_settings(tmp_path, database_url=database_url))
    seeded = seed(services, wallet_micros=wallet_micros, route_options=route_options)
    if prepare is not None:
        prepare(services, seeded)
    env = gateway_environment(gateway_database_url or database_url, redis_url, **settings)
    ports = [free_port() for _ in range(processes)]
    started = [start_serve(env, port, cwd=tmp_path) for port in ports]
    made = Cluster(services=services, ports=ports, processes=started, seeded=seeded, env=env, cwd=tmp_path)
    try:
        for index, process in enumerate(started):
            wait_ready(made.url(index), process)
        yield made
    finally:
        for process in made.processes:  # a restarted process replaced its predecessor here
            stop(process)
        services.close()
