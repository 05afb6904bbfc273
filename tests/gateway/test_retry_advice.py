"""Refusals tell clients whether to retry: the official SDK, default retries on, makes one call.

The ``openai`` SDK retries 408, 409, 429 and 5xx unless the answer says ``x-should-retry: false``;
a permanent refusal retried three times would leave three receipts for one call.
"""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from glasskey.errors import APIKeyError, BudgetError, ClientError, RouteError, WalletError, retry_advice
from glasskey.keys.service import find_by_public_id, revoke_key

HELLO: Any = [{"role": "user", "content": "Hello"}]  # the SDK types it; a plain list here


def receipts_of(gateway: Any, key: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{gateway.v1}/receipts", headers={"authorization": f"Bearer {key}"})
    assert response.status_code == 200
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def one_call(gateway: Any, key: str, model: str) -> openai.APIStatusError:
    # The SDK's own defaults: two retries, honouring x-should-retry and retry-after.
    sdk = OpenAI(base_url=gateway.v1, api_key=key)
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(model=model, messages=HELLO, max_tokens=20)
    return caught.value


def test_a_spent_budget_is_one_call_and_one_receipt(gateway):
    key = gateway.new_key(settlement="routed", budget_total_micros=1)
    error = one_call(gateway, key, "gpt-4o-mini")
    assert error.status_code == 429
    assert error.response.headers["x-should-retry"] == "false"
    assert [r["error_source"] for r in receipts_of(gateway, key)] == ["budget"]


def test_a_model_without_an_enabled_route_is_one_call_and_one_receipt(gateway):
    key = gateway.new_key(settlement="routed")
    error = one_call(gateway, key, "gpt-4o")  # in the catalog, no route seeded
    assert error.status_code == 503
    assert error.response.headers["x-should-retry"] == "false"
    assert [r["error_source"] for r in receipts_of(gateway, key)] == ["route"]


def test_a_model_not_allowed_and_a_revoked_key_say_not_to_retry(gateway):
    error = one_call(gateway, gateway.official_key, "claude-sonnet-4-5")
    assert error.status_code == 403
    assert error.response.headers["x-should-retry"] == "false"
    key = gateway.new_key(settlement="routed")
    with gateway.services.db.write() as conn:
        record = find_by_public_id(conn, key.split("-")[1])
        assert record is not None
        revoke_key(conn, record.id, gateway.services.clock())
    gateway.services.cache.clear()
    answer = httpx.post(
        f"{gateway.v1}/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": "gpt-4o-mini", "messages": HELLO},
    )
    assert answer.status_code == 401
    assert answer.headers["x-should-retry"] == "false"


def test_transient_refusals_carry_retry_after_and_permanent_ones_do_not():
    assert RouteError("breakers open", code="no_healthy_route").headers == {"retry-after": "1"}
    limited = BudgetError("slow down", code="rate_limit_exceeded", headers={"retry-after": "7"})
    assert limited.headers == {"retry-after": "7"}
    for permanent in (
        BudgetError("spent", code="daily_budget_exceeded"),
        RouteError("no route", code="no_route"),
        APIKeyError("revoked", code="key_revoked"),
        WalletError("empty"),
        ClientError("bad body"),
    ):
        assert permanent.headers == {"x-should-retry": "false"}, permanent.code
        assert "retry-after" not in permanent.headers
    # Upstream failures and every-route-failed may pass: the SDK's own judgement stands.
    assert retry_advice("upstream", "upstream_502") == {}
    assert retry_advice("route", "all_routes_failed") == {}


def test_a_throttled_sign_in_is_transient_though_its_source_is_key():
    assert retry_advice("key", "too_many_failed_sign_ins") == {"retry-after": "1"}
    assert retry_advice("key", "key_revoked") == {"x-should-retry": "false"}
