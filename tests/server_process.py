"""A real gateway process for the tests that kill one (``glasskey serve`` in a subprocess)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from typing import Any

import httpx
from pydantic import SecretStr

from glasskey.settings import Settings
from glasskey.store.database import Database


def server_env(settings: Settings, port: int) -> dict[str, str]:
    """The environment of a ``glasskey serve`` with ``settings`` on ``port``, and no other GLASSKEY_ variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLASSKEY_")}
    for name in settings.model_fields_set:
        value = getattr(settings, name)
        text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        env[f"GLASSKEY_{name.upper()}"] = "true" if value is True else text
    return {**env, "GLASSKEY_PORT": str(port)}


def start_server(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start ``glasskey serve`` and return once it answers ``/healthz`` (after its start-up)."""
    server = subprocess.Popen(
        [sys.executable, "-c", "from glasskey.cli import main; main()", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{env['GLASSKEY_PORT']}/healthz")
            return server
        except httpx.TransportError:
            time.sleep(0.05)
    server.kill()
    raise AssertionError("the gateway did not start")


def held_calls(port: str, key: str, count: int) -> list[threading.Thread]:
    """``count`` chat requests to the gateway on ``port``, each from a thread of its own, already
    started; a request whose gateway is killed under it ends quietly."""

    def call() -> None:
        with contextlib.suppress(httpx.TransportError):
            httpx.post(
                f"http://127.0.0.1:{port}/v1/chat/completions",
                headers={"authorization": f"Bearer {key}"},
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16},
                timeout=60,
            )

    callers = [threading.Thread(target=call) for _ in range(count)]
    for caller in callers:
        caller.start()
    return callers


def rows_when(db: Database, query: Any, count: int, seconds: float) -> list[Any]:
    """The rows of ``query`` once there are ``count`` of them, or those there are after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        with db.read() as conn:
            rows = list(conn.execute(query))
        if len(rows) == count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)
