"""The running gateway, driven by the official ``openai`` SDK exactly as a user would."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI


def client(gateway, key: str) -> OpenAI:
    return OpenAI(base_url=gateway.v1, api_key=key, max_retries=0)


def receipts(gateway, key: str, **params) -> list[dict[str, Any]]:
    response = httpx.get(f"{gateway.v1}/receipts", params=params, headers={"authorization": f"Bearer {key}"})
    assert response.status_code == 200
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def error_of(exc: openai.APIStatusError) -> dict[str, Any]:
    """The error object of the brief, as the SDK hands it over."""
    assert isinstance(exc.body, dict)
    return exc.body


def test_chat_completion_is_served_charged_and_receipted(gateway):
    sdk = client(gateway, gateway.routed_key)
    raw = sdk.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}], max_tokens=50
    )
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    request_id = raw.headers["x-request-id"]
    charge = int(raw.headers["x-glasskey-charge-micros"])
    assert charge > 0
    assert raw.headers["x-glasskey-settlement"] == "routed"
    receipt = httpx.get(
        f"{gateway.v1}/receipts/{request_id}", headers={"authorization": f"Bearer {gateway.routed_key}"}
    ).json()
    assert receipt["status"] == "succeeded"
    assert receipt["charge_micros"] == charge
    assert receipt["input_tokens"] == completion.usage.prompt_tokens
    assert receipt["output_tokens"] == completion.usage.completion_tokens
    assert receipt["route_id"] == "rt-gpt-4o-mini-routed"
    assert receipt["usage_source"] == "provider_reported"
    assert receipt["attempts"][0]["status"] == "succeeded"
    gateway.audit_ok()


def test_streaming_with_usage_matches_non_streaming_and_bills_once(gateway):
    sdk = client(gateway, gateway.routed_key)
    body: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": "Tell a story"}],
        "max_tokens": 80,
    }
    whole = sdk.chat.completions.create(**body)
    chunks = list(sdk.chat.completions.create(**body, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    found = receipts(gateway, gateway.routed_key, model="claude-sonnet-4-5")
    assert [r["stream"] for r in found] == [True, False]
    assert found[0]["charge_micros"] == found[1]["charge_micros"] > 0
    assert found[0]["ttft_ms"] is not None
    gateway.audit_ok()


def test_stream_without_include_usage_sends_no_usage_chunk(gateway):
    sdk = client(gateway, gateway.routed_key)
    chunks = list(
        sdk.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=20, stream=True
        )
    )
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)
    assert receipts(gateway, gateway.routed_key)[0]["charge_micros"] > 0
    gateway.audit_ok()


def test_model_list_shows_only_what_the_key_may_call(gateway):
    assert sorted(m.id for m in client(gateway, gateway.routed_key).models.list()) == [
        "claude-sonnet-4-5",
        "gemini-2.5-flash",
        "gpt-4o-mini",
    ]
    assert [m.id for m in client(gateway, gateway.official_key).models.list()] == ["gpt-4o-mini"]


def test_unknown_key_raises_authentication_error_and_leaves_a_receipt(gateway):
    bogus = "gk-aaaaaaaaaaaa-" + "b" * 40
    with pytest.raises(openai.AuthenticationError) as caught:
        client(gateway, bogus).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    error = error_of(caught.value)
    assert error["source"] == "key"
    assert "b" * 40 not in str(caught.value.response.text)
    request_id = caught.value.response.headers["x-request-id"]
    assert error["request_id"] == request_id
    with gateway.services.db.read() as conn:
        from glasskey.receipts.records import get_receipt

        receipt = get_receipt(conn, request_id)
    assert receipt["error_source"] == "key"
    assert receipt["key_public_id"] == "aaaaaaaaaaaa"
    gateway.audit_ok()


def test_disallowed_model_is_refused_naming_the_model(gateway):
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client(gateway, gateway.official_key).chat.completions.create(
            model="claude-sonnet-4-5", messages=[{"role": "user", "content": "x"}]
        )
    assert error_of(caught.value)["source"] == "model"
    assert "claude-sonnet-4-5" in error_of(caught.value)["message"]
    failed = receipts(gateway, gateway.official_key, status="failed")
    assert failed[0]["error_source"] == "model"
    assert failed[0]["requested_model"] == "claude-sonnet-4-5"


def test_unknown_model_is_not_found(gateway):
    key = gateway.new_key(settlement="routed")
    with pytest.raises(openai.NotFoundError) as caught:
        client(gateway, key).chat.completions.create(model="gpt-9000", messages=[{"role": "user", "content": "x"}])
    assert error_of(caught.value)["source"] == "model"
    assert "gpt-9000" in error_of(caught.value)["message"]
    assert receipts(gateway, key, status="failed")[0]["http_status"] == 404


def test_empty_wallet_answers_402_with_source_wallet_and_a_receipt(gateway):
    from glasskey.orgs.service import create_org

    with gateway.services.db.write() as conn:
        poor = create_org(conn, "poor", gateway.services.clock())
    from glasskey.keys.policy import KeyPolicy
    from glasskey.keys.service import create_key

    with gateway.services.db.write() as conn:
        _, key = create_key(
            conn,
            pepper=gateway.services.pepper,
            org_id=poor.id,
            name="broke",
            policy=KeyPolicy(settlement="routed"),
            now=gateway.services.clock(),
        )
    with pytest.raises(openai.APIStatusError) as caught:
        client(gateway, key).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 402
    assert error_of(caught.value)["source"] == "wallet"
    failed = receipts(gateway, key, status="failed")
    assert failed[0]["error_source"] == "wallet"
    assert failed[0]["charge_micros"] == 0
    gateway.audit_ok()


def test_upstream_error_is_attributed_to_the_provider(gateway):
    from glasskey.routing.routes import update_route

    with gateway.services.db.write() as conn:
        update_route(conn, "rt-gemini-2.5-flash-routed", options={"fail_status": 500})
    with pytest.raises(openai.InternalServerError) as caught:
        client(gateway, gateway.routed_key).chat.completions.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.status_code == 502
    assert error_of(caught.value)["source"] == "upstream"
    assert error_of(caught.value)["provider"] == "simulated"
    failed = receipts(gateway, gateway.routed_key, status="failed")[0]
    assert failed["attempts"][0]["http_status"] == 500
    assert failed["charge_micros"] == 0
    gateway.audit_ok()


def test_stream_cut_mid_answer_sends_an_error_event_and_bills_only_what_was_sent(gateway):
    from glasskey.routing.routes import update_route

    with gateway.services.db.write() as conn:
        update_route(conn, "rt-gpt-4o-mini-routed", options={"cut_stream_after_chunks": 2})
    response = httpx.post(
        f"{gateway.v1}/chat/completions",
        headers={"authorization": f"Bearer {gateway.routed_key}"},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "stream": True},
    )
    assert response.status_code == 200
    events = [line for line in response.text.splitlines() if line.startswith("data: ")]
    assert "[DONE]" not in events[-1]
    assert '"source":"upstream"' in events[-1]
    receipt = receipts(gateway, gateway.routed_key)[0]
    assert receipt["status"] == "failed"
    assert receipt["usage_source"] == "estimated"
    assert 0 < receipt["charge_micros"] < receipt["hold_micros"]
    gateway.audit_ok()


def test_quote_moves_no_money_and_names_route_and_wallet(gateway):
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 100,
    }
    with gateway.services.db.read() as conn:
        from glasskey.ledger import audit

        before = audit(conn).transfers_checked
    quote = httpx.post(
        f"{gateway.v1}/quote", json=body, headers={"authorization": f"Bearer {gateway.routed_key}"}
    ).json()
    assert quote["route"]["id"] == "rt-gpt-4o-mini-routed"
    assert quote["wallet"]["kind"] == "routed"
    assert quote["admitted"] is True
    assert 0 < quote["estimated_charge_micros"] <= quote["max_charge_micros"]
    with gateway.services.db.read() as conn:
        assert audit(conn).transfers_checked == before
    # The hold of the real request equals the quote's maximum.
    raw = client(gateway, gateway.routed_key).chat.completions.with_raw_response.create(**body)
    assert int(raw.headers["x-glasskey-hold-micros"]) == quote["max_charge_micros"]


def test_key_explains_itself(gateway):
    explanation = httpx.get(f"{gateway.v1}/key", headers={"authorization": f"Bearer {gateway.routed_key}"}).json()
    assert [m["model"] for m in explanation["models"]] == ["gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-flash"]
    assert explanation["settlement"] == "routed"
    assert explanation["lower_cost_routes"] is True
    assert explanation["wallet"]["kind"] == "routed"
    assert explanation["wallet"]["available_micros"] == 50_000_000
    assert explanation["receipts_url"].endswith("/v1/receipts")
    assert explanation["failures_url"].endswith("/v1/receipts?status=failed")
    first = explanation["models"][0]
    assert first["effective_price_per_mtok_micros"]["input"] == 90_000  # 60% of $0.15
    assert first["official_price_per_mtok_micros"]["input"] == 150_000
    assert "backup" in first["backups_in_words"]


def test_errors_have_the_brief_shape_and_unknown_paths_are_json(gateway):
    response = httpx.get(f"{gateway.base_url}/v1/nothing-here")
    assert response.status_code == 404
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "code", "param", "request_id", "source"}
    assert response.headers["x-request-id"] == error["request_id"]
    bad = httpx.post(
        f"{gateway.v1}/chat/completions",
        content=b"{not json",
        headers={"authorization": f"Bearer {gateway.routed_key}"},
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["source"] == "client"


def test_oversized_body_is_refused_with_413(gateway):
    huge = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "' + b"x" * 5_000_000 + b'"}]}'
    response = httpx.post(
        f"{gateway.v1}/chat/completions", content=huge, headers={"authorization": f"Bearer {gateway.routed_key}"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["source"] == "client"


def test_client_chosen_upstream_is_refused(gateway):
    response = httpx.post(
        f"{gateway.v1}/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "api_base": "http://evil"},
        headers={"authorization": f"Bearer {gateway.routed_key}"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "api_base"
