"""The lean entry point of the hot endpoints answers exactly as the Starlette app behind it would.

``POST /v1/chat/completions`` and ``POST /v1/embeddings`` skip Starlette's middleware and router;
these tests hold them to the same request ids, error shape and body limit as every other path, and
an unexpected error to a 500 in the error shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from conftest_helpers import make_settings
from gateway_fixtures import Gateway, seed
from glasskey.app import build_app
from glasskey.gateway.lifecycle import Lifecycle
from glasskey.services import build_services


@pytest.fixture
def client(tmp_path: Any) -> Iterator[tuple[TestClient, dict[str, str]]]:
    services = build_services(make_settings(tmp_path, request_body_max_bytes=2048))
    seeded = seed(services)
    with TestClient(build_app(services), raise_server_exceptions=False) as test_client:
        yield test_client, seeded
    services.close()


def chat_body() -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def test_a_hot_endpoint_and_a_starlette_endpoint_render_the_same_error(client: Any) -> None:
    test_client, _ = client
    hot = test_client.post("/v1/chat/completions", json=chat_body())
    routed = test_client.post("/v1/quote", json=chat_body())
    assert hot.status_code == routed.status_code == 401
    assert hot.headers["content-type"] == routed.headers["content-type"] == "application/json"
    assert hot.json()["error"].keys() == routed.json()["error"].keys()
    assert {k: v for k, v in hot.json()["error"].items() if k != "request_id"} == {
        k: v for k, v in routed.json()["error"].items() if k != "request_id"
    }
    for response in (hot, routed):
        assert response.headers.get_list("x-request-id") == [response.json()["error"]["request_id"]]
    assert hot.json()["error"]["request_id"] != routed.json()["error"]["request_id"]


def test_a_served_request_carries_one_request_id_naming_its_receipt(client: Any) -> None:
    test_client, seeded = client
    response = test_client.post(
        "/v1/chat/completions", json=chat_body(), headers={"authorization": f"Bearer {seeded['routed_key']}"}
    )
    assert response.status_code == 200
    (request_id,) = response.headers.get_list("x-request-id")
    assert request_id.startswith("req_")
    receipt = test_client.get(f"/v1/receipts/{request_id}", headers={"authorization": f"Bearer {seeded['routed_key']}"})
    assert receipt.status_code == 200
    assert receipt.json()["request_id"] == request_id


def test_other_methods_on_a_hot_path_still_get_starlettes_answer(client: Any) -> None:
    test_client, _ = client
    response = test_client.get("/v1/chat/completions")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "http_405"
    assert response.headers["x-request-id"] == response.json()["error"]["request_id"]


def test_a_body_over_the_limit_without_a_length_is_refused_while_read(client: Any) -> None:
    test_client, seeded = client

    def pieces() -> Iterator[bytes]:
        yield b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"x" * 1024
        yield b'"}]}'

    response = test_client.post(
        "/v1/embeddings", content=pieces(), headers={"authorization": f"Bearer {seeded['routed_key']}"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert response.headers["x-request-id"] == response.json()["error"]["request_id"]


def test_an_unexpected_error_is_a_500_in_the_error_shape_with_its_request_id(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    test_client, _ = client

    async def broken(self: Lifecycle, *args: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Lifecycle, "chat", broken)
    # The front door holds the lifecycle's bound methods, so build a new app after the patch.
    with TestClient(build_app(test_client.app.state.services), raise_server_exceptions=False) as patched:
        response = patched.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "internal_error"
    assert error["source"] == "route"
    assert error["request_id"] == response.headers["x-request-id"]


def test_a_served_gateway_answers_the_hot_path_over_http(gateway: Gateway) -> None:
    response = httpx.post(
        f"{gateway.v1}/chat/completions", json=chat_body(), headers={"authorization": f"Bearer {gateway.routed_key}"}
    )
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(response.content))
    assert response.json()["choices"]
    assert response.headers["x-glasskey-charge-micros"].isdigit()


def test_under_a_root_path_the_hot_endpoints_have_the_same_one_door(client: Any) -> None:
    test_client, seeded = client
    headers = {"authorization": f"Bearer {seeded['routed_key']}"}
    with TestClient(test_client.app, root_path="/gateway", raise_server_exceptions=False) as rooted:
        served = rooted.post("/v1/chat/completions", json=chat_body(), headers=headers)
        refused = rooted.get("/v1/embeddings")
    assert served.status_code == 200
    assert served.headers["x-glasskey-charge-micros"].isdigit()
    assert refused.status_code == 405
    assert refused.json()["error"]["code"] == "http_405"
    assert refused.headers["allow"] == "POST"


def test_the_front_door_counts_failed_authentications_by_the_clients_address(client: Any) -> None:
    test_client, _ = client
    garbage = {"authorization": "Bearer gk-unknownid0000-" + "x" * 40}
    statuses = [
        test_client.post("/v1/chat/completions", json=chat_body(), headers=garbage).status_code for _ in range(130)
    ]
    assert statuses[0] == 401
    assert statuses[-1] == 429, "past the per-address limit the front door refuses before checking the key"
