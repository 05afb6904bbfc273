"""Embeddings through the gateway with the openai SDK: floats and base64, billed by input tokens."""

from __future__ import annotations

import httpx
import openai
import pytest
from openai import OpenAI

from gateway_fixtures import add_embedding_route


def test_sdk_embeddings_default_base64_decode_to_the_float_vectors(gateway):
    add_embedding_route(gateway.services)
    key = gateway.new_key(settlement="routed")
    sdk = OpenAI(base_url=gateway.v1, api_key=key, max_retries=0)
    # The SDK asks for base64 by default and decodes it; explicit floats must agree.
    decoded = sdk.embeddings.create(model="text-embedding-3-small", input=["hello world", "bye"])
    floats = sdk.embeddings.create(
        model="text-embedding-3-small", input=["hello world", "bye"], encoding_format="float"
    )
    assert len(decoded.data) == 2
    assert len(decoded.data[0].embedding) == 256
    for a, b in zip(decoded.data[0].embedding, floats.data[0].embedding, strict=True):
        assert a == pytest.approx(b, rel=1e-6)
    assert decoded.usage.prompt_tokens > 0
    receipts = httpx.get(f"{gateway.v1}/receipts", headers={"authorization": f"Bearer {key}"}).json()["data"]
    assert [r["endpoint"] for r in receipts] == ["embeddings", "embeddings"]
    assert receipts[0]["input_tokens"] == decoded.usage.prompt_tokens
    assert receipts[0]["output_tokens"] == 0
    assert receipts[0]["charge_micros"] > 0
    gateway.audit_ok()


def test_a_chat_model_cannot_serve_embeddings(gateway):
    key = gateway.new_key(settlement="routed")
    sdk = OpenAI(base_url=gateway.v1, api_key=key, max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.embeddings.create(model="gpt-4o-mini", input="x")
    assert "chat model" in str(caught.value)
    gateway.audit_ok()
