"""The targets the same load is sent to: the upstream itself, the bare proxy, glasskey, LiteLLM, Portkey.

Each fake upstream serves one added latency; every proxy reaches them through one model name per
latency (``MODELS``), so a single proxy process serves both and the model in the request body
picks the upstream, as it does in production.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import Processes, Server, free_port
from bench.seed import GatewaySeed, create_postgres_database, seed_gateway

ROOT = Path(__file__).resolve().parent.parent
# One catalog model per upstream latency (ms).
MODELS = {0: "gpt-4o-mini", 50: "gpt-4.1-mini"}
LITELLM_DIR = ROOT / "bench" / "peers" / "litellm"
LITELLM_BIN = LITELLM_DIR / ".venv" / "bin" / "litellm"
GLASSKEY_BIN = Path(sys.executable).parent / "glasskey"
PORTKEY_DIR = ROOT / "bench" / "peers" / "portkey"
PORTKEY_PACKAGE = PORTKEY_DIR / "node_modules" / "@portkey-ai" / "gateway"
PORTKEY_ENTRY = PORTKEY_PACKAGE / "build" / "start-server.js"
CHAT_PATH = "/v1/chat/completions"


@dataclass
class Target:
    """Where one target listens, the keys its requests carry, and the process behind it."""

    name: str
    kind: str  # direct | bare | glasskey | litellm | portkey
    servers: dict[int, Server]  # latency -> the process that serves it (one process for a proxy)
    keys: tuple[str, ...] = ()
    # latency -> headers every request carries (Portkey is told its upstream by headers)
    headers: dict[int, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    streams: bool = True  # measured on streaming cells too (Portkey is compared non-streaming only)
    seed: GatewaySeed | None = None
    postgres_database: str | None = None
    notes: list[str] = field(default_factory=list)

    def url(self, latency_ms: int) -> str:
        return self.servers[latency_ms].base_url + CHAT_PATH

    @property
    def process(self) -> Server:
        return next(iter(self.servers.values()))


def start_upstreams(procs: Processes, latencies: list[int]) -> Target:
    servers = {}
    for latency in latencies:
        port = free_port()
        argv = [sys.executable, "-m", "bench.upstream", "--port", str(port), "--latency-ms", str(latency)]
        servers[latency] = procs.start(f"upstream-{latency}ms", argv, port, cwd=ROOT)
    return Target("direct", "direct", servers)


def _routes(upstreams: Target) -> dict[str, str]:
    return {MODELS[latency]: server.base_url + "/v1" for latency, server in upstreams.servers.items()}


def start_bare(procs: Processes, upstreams: Target, client_library: str = "glasskey") -> Target:
    """The bare proxy; ``bare`` with glasskey's upstream client (aiohttp as glasskey sets it up),
    ``bare-aiohttp`` with aiohttp as it comes, ``bare-httpx2`` with httpx2's pool."""
    name = "bare" if client_library == "glasskey" else f"bare-{client_library}"
    port = free_port()
    argv = [sys.executable, "-m", "bench.bare_proxy", "--port", str(port), "--client", client_library]
    for model, url in _routes(upstreams).items():
        argv += ["--route", f"{model}={url}"]
    server = procs.start(name, argv, port, cwd=ROOT)
    return Target(name, "bare", dict.fromkeys(upstreams.servers, server))


def seed_glasskey(
    name: str, upstreams: Target, data_dir: Path, *, postgres_database: str | None = None, load_keys: int = 16
) -> Target:
    """A seeded, not yet started glasskey target (SQLite in ``data_dir``, or a fresh PostgreSQL database)."""
    if postgres_database is None:
        url = f"sqlite:///{data_dir / 'glasskey.db'}"
    else:
        url = create_postgres_database(postgres_database)
    seed = seed_gateway(url, data_dir, _routes(upstreams), load_keys)
    return Target(name, "glasskey", {}, keys=seed.keys, seed=seed, postgres_database=postgres_database)


def start_glasskey(
    procs: Processes,
    target: Target,
    latencies: list[int],
    *,
    workers: int = 1,
    redis_url: str = "",
    database_pool: tuple[int, int] | None = None,
) -> Target:
    """``glasskey serve`` for a seeded target; ``workers`` > 1 (PostgreSQL only) under uvicorn's supervisor;
    ``database_pool`` is each process's PostgreSQL pool (size, overflow), the settings' 10 + 20 if None."""
    assert target.seed is not None
    port = free_port()
    env = target.seed.env(port, dict(os.environ))
    if redis_url:
        env["GLASSKEY_REDIS_URL"] = redis_url
    if database_pool is not None:
        env["GLASSKEY_DATABASE_POOL_SIZE"], env["GLASSKEY_DATABASE_POOL_OVERFLOW"] = map(str, database_pool)
    argv = [str(GLASSKEY_BIN), "serve"] + (["--workers", str(workers)] if workers > 1 else [])
    server = procs.start(target.name, argv, port, env=env, cwd=target.seed.data_dir)
    target.servers = dict.fromkeys(latencies, server)
    return target


def litellm_installed() -> bool:
    return LITELLM_BIN.exists()


def litellm_version() -> str:
    python = LITELLM_DIR / ".venv" / "bin" / "python"
    code = "import importlib.metadata as m; print(m.version('litellm'))"
    try:
        return subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def start_litellm(procs: Processes, upstreams: Target) -> Target:
    """LiteLLM's proxy, offline: local cost map, no database, one worker, a master key."""
    port = free_port()
    master_key = "sk-" + secrets.token_hex(24)
    env = dict(os.environ)
    env.update(
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_MASTER_KEY=master_key,
        LITELLM_LOG="ERROR",
        BENCH_UPSTREAM_FAST=upstreams.servers.get(0, upstreams.process).base_url + "/v1",
        BENCH_UPSTREAM_SLOW=upstreams.servers.get(50, upstreams.process).base_url + "/v1",
    )
    env.pop("DATABASE_URL", None)
    argv = [
        str(LITELLM_BIN),
        "--config",
        str(LITELLM_DIR / "config.yaml"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    server = procs.start("litellm", argv, port, env=env, cwd=LITELLM_DIR, timeout_s=180)
    return Target("litellm", "litellm", dict.fromkeys(upstreams.servers, server), keys=(master_key,))


def portkey_installed() -> bool:
    return PORTKEY_ENTRY.exists()


def portkey_version() -> str:
    try:
        return str(json.loads((PORTKEY_PACKAGE / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "unknown"


def start_portkey(procs: Processes, upstreams: Target) -> Target:
    """Portkey's open-source gateway (Node), one process, headless, no cache, no Redis.

    Portkey keeps no configuration of its own here: each request names its provider (``openai``)
    and the OpenAI-compatible base URL to call (``x-portkey-custom-host``, which Portkey allows for
    loopback by default: ``TRUSTED_CUSTOM_HOSTS``), and carries the upstream's bearer key.
    """
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "PORTKEY_"))}
    env.update(NODE_ENV="production")  # no UI, no log-streaming pages
    argv = ["node", str(PORTKEY_ENTRY), f"--port={port}", "--headless"]
    server = procs.start("portkey", argv, port, env=env, cwd=PORTKEY_DIR, timeout_s=60)
    headers: dict[int, tuple[tuple[str, str], ...]] = {
        latency: (("x-portkey-provider", "openai"), ("x-portkey-custom-host", upstream.base_url + "/v1"))
        for latency, upstream in upstreams.servers.items()
    }
    return Target(
        "portkey",
        "portkey",
        dict.fromkeys(upstreams.servers, server),
        keys=("sk-bench-upstream",),
        headers=headers,
        streams=False,
    )
