"""``GLASSKEY_LOG_LEVEL=debug`` works, and even then no log line holds a secret.

The logging configuration ``glasskey serve`` gives uvicorn (``serving.log_config``) is applied at
DEBUG with every handler writing to one buffer; then a request through a route with a canary
credential, failed authentications with canary keys, and admin calls (right and wrong tokens) run
against a real server. The buffer has glasskey's DEBUG lines, and none holds a key's secret, the
admin token or the route credential.
"""

from __future__ import annotations

import io
import logging
import logging.config
from collections.abc import Iterator

import httpx
import pytest

import gateway_fixtures
from fake_openai import FakeOpenAI
from gateway_fixtures import Gateway, ServerThread
from glasskey.keys import secret as key_secret
from glasskey.serving import log_config
from hostile.test_secrets_at_rest import MODEL
from hostile.test_secrets_at_rest import _create_route as create_route

ROUTE_CANARY = "sk-canary-debug-log-7e1f0a9b3c5d2e8f4a6b"
gateway = gateway_fixtures.gateway


@pytest.fixture
def upstream() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(credential=ROUTE_CANARY)
    with ServerThread(fake.app) as server:
        fake.base_url = server.base_url
        yield fake


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    config = log_config("debug")
    logging.config.dictConfig(config)
    for name in [*config["loggers"], ""]:
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(buffer)
    try:
        yield buffer
    finally:
        logging.getLogger("glasskey").handlers.clear()
        logging.getLogger("glasskey").propagate = True
        logging.getLogger("glasskey").setLevel(logging.NOTSET)


def test_debug_logs_hold_no_key_secret_admin_token_or_route_credential(
    gateway: Gateway, upstream: FakeOpenAI, debug_log: io.StringIO
) -> None:
    admin_token = gateway.services.settings.admin_token.get_secret_value()
    admin = httpx.Client(
        base_url=f"{gateway.base_url}/admin/api", headers={"authorization": f"Bearer {admin_token}"}, timeout=30
    )
    created = create_route(admin, upstream, credential=ROUTE_CANARY)
    assert created.status_code in (200, 201), created.text
    key = gateway.new_key(allowed_models=(MODEL,), settlement="routed")
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "Hello"}]}
    served = httpx.post(f"{gateway.v1}/chat/completions", headers={"authorization": f"Bearer {key}"}, json=chat)
    assert served.status_code == 200, served.text
    unknown_key = key_secret.generate()[0]
    wrong_secret = key[: -key_secret.SECRET_LENGTH] + "Z" * key_secret.SECRET_LENGTH
    for bad in (unknown_key, wrong_secret, "gk-not-a-key-at-all"):
        refused = httpx.post(f"{gateway.v1}/chat/completions", headers={"authorization": f"Bearer {bad}"}, json=chat)
        assert refused.status_code == 401
    assert admin.get("/routes").status_code == 200
    wrong_admin = httpx.get(f"{gateway.base_url}/admin/api/routes", headers={"authorization": f"Bearer {key}"})
    assert wrong_admin.status_code in (401, 403)
    admin.close()

    logs = debug_log.getvalue()
    assert " DEBUG glasskey.gateway: " in logs  # the level works: glasskey's own DEBUG lines are there
    assert "authentication failed (invalid_api_key)" in logs
    secrets = {
        "key secret": key.rsplit("-", 1)[1],
        "unknown key's secret": unknown_key.rsplit("-", 1)[1],
        "wrong secret": wrong_secret.rsplit("-", 1)[1],
        "admin token": admin_token,
        "route credential": ROUTE_CANARY,
    }
    for what, value in secrets.items():
        assert value not in logs, f"the {what} is in a log line"
