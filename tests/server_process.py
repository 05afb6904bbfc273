"""A real gateway process for the tests that kill one (``glasskey serve`` in a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
from pydantic import SecretStr

from glasskey.settings import Settings


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
