"""The upstream address policy holds at connect time, not only when a route is saved (issue 18 #12).

A route saved under one setting (or through the domain function, which does not judge URLs) may
name ``localhost`` or a literal loopback address; a name may also resolve elsewhere tomorrow (DNS
rebinding). With private upstreams not allowed, the gateway refuses to connect to either: a 502
blamed on the route's provider and naming the policy, and the fake upstream never sees a request.
With them allowed, the same route is served.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest_helpers import make_settings
from fake_openai import FakeOpenAI
from gateway_fixtures import Gateway, ServerThread, _gateway
from glasskey.services import build_services
from hostile.conftest import COMPATIBLE_MODEL, ROUTE_CREDENTIAL, add_compatible_route, receipt_of


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    upstream = FakeOpenAI(credential=ROUTE_CREDENTIAL)
    with ServerThread(upstream.app) as server:
        upstream.base_url = server.base_url
        yield upstream


@pytest.fixture(params=[False, True], ids=["private-refused", "private-allowed"])
def gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Gateway]:
    yield from _gateway(build_services(make_settings(tmp_path, allow_private_upstreams=request.param)))


def ask(gateway: Gateway, key: str) -> httpx.Response:
    body = {"model": COMPATIBLE_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    return httpx.post(f"{gateway.v1}/chat/completions", json=body, headers={"authorization": f"Bearer {key}"})


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"], ids=["name", "literal"])
def test_a_loopback_upstream_is_refused_at_connect_time_unless_private_upstreams_are_allowed(
    gateway: Gateway, fake: FakeOpenAI, host: str
) -> None:
    port = fake.base_url.rsplit(":", 1)[1]
    key = add_compatible_route(gateway, f"http://{host}:{port}/v1")
    fake.requests.clear()
    response = ask(gateway, key)
    if gateway.services.settings.allow_private_upstreams:
        assert response.status_code == 200, response.text
        assert len(fake.requests) == 1
        return
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["source"] == "upstream"
    assert "refused by policy" in error["message"] and "loopback" in error["message"]
    assert "openai_compatible" in error["message"] or error.get("provider") == "openai_compatible"
    assert fake.requests == []
    receipt = receipt_of(gateway, response.headers["x-request-id"])
    assert receipt.error_source == "upstream"
    assert receipt.status == "failed"
    gateway.audit_ok()
