"""PostgreSQL goes away under the gateway, then comes back: 503 naming the gateway, then service again.

The gateway reaches the real PostgreSQL of the test machine through a loopback TCP forwarder (a
process of its own) that the test kills and starts again, so the database goes down for this
gateway only (other tests share the server).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from conftest_helpers import make_settings, postgres_schema_url
from gateway_fixtures import Gateway, ServerThread, free_port, seed
from glasskey.app import build_app
from glasskey.services import build_services
from tcp_forwarder import Forwarder

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


@pytest.fixture
def proxied(tmp_path) -> Iterator[tuple[Gateway, Forwarder]]:
    forwarder = Forwarder(free_port(), 5432)
    forwarder.start()
    for url in postgres_schema_url():
        proxied_url = url.replace(":5432/", f":{forwarder.listen_port}/")
        services = build_services(make_settings(tmp_path, database_url=proxied_url))
        seeded = seed(services)
        try:
            with ServerThread(build_app(services)) as server:
                yield Gateway(services=services, base_url=server.base_url, **seeded), forwarder
        finally:
            services.close()
            forwarder.cut()


def test_a_database_outage_is_a_503_naming_the_gateway_and_service_resumes_by_itself(proxied):
    gateway, forwarder = proxied
    headers = {"authorization": f"Bearer {gateway.routed_key}"}
    with httpx.Client(base_url=gateway.v1, headers=headers, timeout=30) as client:
        assert client.post("/chat/completions", json=CHAT).status_code == 200
        forwarder.cut()
        time.sleep(1.1)  # past the one-second read cache: every lookup needs the database now
        refused = [
            client.post("/chat/completions", json=CHAT),
            client.post("/chat/completions", json={**CHAT, "stream": True}),
            client.get("/key"),
        ]
        for response in refused:
            assert response.status_code == 503, response.text
            error = response.json()["error"]
            assert (error["source"], error["code"]) == ("gateway", "gateway_unavailable")
            assert response.headers["retry-after"].isdigit()
        forwarder.start()
        resumed = None
        for _ in range(50):  # the pool and the writer reconnect by themselves
            resumed = client.post("/chat/completions", json=CHAT)
            if resumed.status_code == 200:
                break
            time.sleep(0.1)
        assert resumed is not None and resumed.status_code == 200, resumed.text if resumed else None
    gateway.audit_ok()
