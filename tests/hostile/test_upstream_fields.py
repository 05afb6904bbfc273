"""Nothing a client sends changes where or how glasskey connects (issue 18 #11).

Fields that choose or configure an upstream (``api_base``, ``base_url``, ``api_key``, ...) are
refused at any depth and in any case before anything is sent, and headers a client adds never
reach the upstream: an ``openai_compatible`` route's fake host sees only the configured base URL
and the route's own credential.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fake_openai import FakeOpenAI
from gateway_fixtures import Gateway, ServerThread
from glasskey.gateway.requests import UPSTREAM_FIELDS
from hostile.conftest import COMPATIBLE_MODEL, ROUTE_CREDENTIAL, add_compatible_route, call, receipt_of, send_all

EVIL = "http://169.254.169.254/evil"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    upstream = FakeOpenAI(credential=ROUTE_CREDENTIAL)
    with ServerThread(upstream.app) as server:
        upstream.base_url = server.base_url
        yield upstream


@pytest.fixture(scope="module")
def routed(hostile_gateway: Gateway, fake: FakeOpenAI) -> tuple[Gateway, str]:
    return hostile_gateway, add_compatible_route(hostile_gateway, f"{fake.base_url}/v1")


def placements(name: str) -> list[dict[str, Any]]:
    """``name`` where a client could smuggle it: top level in three spellings, and nested."""
    camel = name.split("_")[0] + "".join(part.title() for part in name.split("_")[1:])
    return [
        {name: EVIL},
        {name.upper(): EVIL},
        {camel: EVIL},
        {"extra_body": {name: EVIL}},
        {"metadata": {name: EVIL}},
        {"messages": [{"role": "user", "content": "hi", name: EVIL}]},
    ]


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": COMPATIBLE_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20, **fields}


def test_every_upstream_field_is_refused_wherever_it_is_put_and_nothing_is_sent(
    routed: tuple[Gateway, str], fake: FakeOpenAI
) -> None:
    gateway, key = routed
    fake.requests.clear()
    calls = []
    for name in UPSTREAM_FIELDS:
        for fields in placements(name):
            calls.append(call("POST", "chat/completions", chat(**fields), key=key, label=str(fields)))
        # Every endpoint with a body, with the field in one place each.
        fields = placements(name)[len(name) % 6]
        calls.append(call("POST", "chat/completions", chat(stream=True, **fields), key=key, label=str(fields)))
        calls.append(call("POST", "quote", chat(**fields), key=key, label=str(fields)))
        embeddings = {"model": COMPATIBLE_MODEL, "input": "hi", **fields}
        calls.append(call("POST", "embeddings", embeddings, key=key, label=str(fields)))
    for item, response in zip(calls, send_all(gateway, calls), strict=True):
        assert response.status_code == 400, (item.path, item.label, response.text)
        error = response.json()["error"]
        assert error["source"] == "client" and "operator" in error["message"], error
    assert fake.requests == []


def test_a_legitimate_request_reaches_only_the_configured_host_with_the_routes_credential(
    routed: tuple[Gateway, str], fake: FakeOpenAI
) -> None:
    gateway, key = routed
    fake.requests.clear()
    # A tool may well take such arguments: its schema is the model's business, not a connection.
    schema = {"type": "object", "properties": {"api_key": {"type": "string"}, "base_url": {"type": "string"}}}
    tools = [{"type": "function", "function": {"name": "connect", "description": "x", "parameters": schema}}]
    client_headers = {
        "authorization": f"Bearer {key}",
        "openai-organization": "org-evil",
        "openai-project": "proj-evil",
        "x-api-base": EVIL,
        "x-forwarded-host": "evil.example",
        "forwarded": "host=evil.example",
        "api-key": "sk-evil",
    }
    for stream in (False, True):
        body = chat(tools=tools, user="someone", metadata={"team": "research"}, stream=stream)
        response = httpx.post(f"{gateway.v1}/chat/completions", json=body, headers=client_headers, timeout=30)
        assert response.status_code == 200, response.text
        assert receipt_of(gateway, response.headers["x-request-id"]).status == "succeeded"
    assert len(fake.requests) == 2
    for seen in fake.requests:
        assert seen.url == f"{fake.base_url}/v1/chat/completions"
        assert seen.headers["authorization"] == f"Bearer {ROUTE_CREDENTIAL}"
        assert seen.headers["host"] == fake.base_url.removeprefix("http://")
        assert not any("evil" in value or key in value for value in seen.headers.values()), seen.headers
        assert seen.body["tools"][0]["function"]["parameters"] == schema
