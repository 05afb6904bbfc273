"""A model error's status depends on the model, never on the key: 404 unknown, 403 not allowed, 400 wrong kind."""

from __future__ import annotations

from typing import Any

import httpx

from gateway_fixtures import add_embedding_route

HELLO = [{"role": "user", "content": "Hello"}]


def post(gateway: Any, key: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = httpx.post(f"{gateway.v1}/{path}", json=body, headers={"authorization": f"Bearer {key}"})
    error: dict[str, Any] = answer.json()["error"]
    error["status"] = answer.status_code
    return error


def test_an_unknown_model_is_404_even_for_an_allow_listed_key_when_quoted(gateway):
    # The official key allows only gpt-4o-mini; "gpt-9" exists nowhere.
    error = post(gateway, gateway.official_key, "quote", {"model": "gpt-9", "messages": HELLO})
    assert (error["status"], error["code"], error["source"]) == (404, "model_not_found", "model")
    error = post(gateway, gateway.official_key, "quote", {"model": "claude-sonnet-4-5", "messages": HELLO})
    assert (error["status"], error["code"], error["source"]) == (403, "model_not_allowed", "model")


def test_an_unknown_model_is_404_even_for_an_allow_listed_key_when_called(gateway):
    error = post(gateway, gateway.official_key, "chat/completions", {"model": "gpt-9", "messages": HELLO})
    assert (error["status"], error["code"]) == (404, "model_not_found")


def test_a_chat_model_on_embeddings_is_400_wrong_model_kind(gateway):
    add_embedding_route(gateway.services)
    error = post(gateway, gateway.routed_key, "embeddings", {"model": "gpt-4o-mini", "input": "hi"})
    assert (error["status"], error["code"], error["source"]) == (400, "wrong_model_kind", "model")
    key = gateway.new_key(settlement="routed")
    error = post(gateway, key, "chat/completions", {"model": "text-embedding-3-small", "messages": HELLO})
    assert (error["status"], error["code"], error["source"]) == (400, "wrong_model_kind", "model")
