"""Budgets, rate limits, timeouts, backups and stale holds: each failure names its source and leaves a receipt."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from glasskey.gateway.sweeper import sweep_expired_holds
from glasskey.keys.budget import TOTAL, get_spend, hold_budget
from glasskey.keys.service import KeyRecord, get_key
from glasskey.ledger import create_pending, get_balance
from glasskey.ledger.accounts import SYSTEM_REVENUE
from glasskey.orgs.service import wallet_account_id
from glasskey.pricing.catalog import Prices
from glasskey.routing.routes import Route, create_route, update_route

CHAT: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}


def post(gateway, key: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(
        f"{gateway.v1}/chat/completions", json=body or CHAT, headers={"authorization": f"Bearer {key}"}, timeout=30
    )


def last_receipt(gateway, key: str) -> dict[str, Any]:
    found = httpx.get(f"{gateway.v1}/receipts", headers={"authorization": f"Bearer {key}"}).json()["data"]
    assert found, "no receipt"
    receipt: dict[str, Any] = found[0]
    return receipt


def test_total_budget_refuses_with_429_source_budget(gateway):
    key = gateway.new_key(settlement="routed", budget_total_micros=5)  # less than one request's maximum (~11 micros)
    response = post(gateway, key)
    assert response.status_code == 429
    assert response.json()["error"]["source"] == "budget"
    assert response.json()["error"]["code"] == "total_budget_exceeded"
    receipt = last_receipt(gateway, key)
    assert receipt["error_source"] == "budget"
    assert receipt["hold_micros"] == 0
    gateway.audit_ok()


def budgeted_key(gateway, name: str, budget_total_micros: int | None = 1_000_000) -> tuple[str, KeyRecord, str, int]:
    """A routed key with a total budget: (full key, its record, its wallet account, available micros)."""
    key = gateway.new_key(name=name, settlement="routed", budget_total_micros=budget_total_micros)
    with gateway.services.db.read() as conn:
        record = get_key(conn, key.rsplit("-", 1)[0])
        wallet = wallet_account_id(conn, gateway.org_id, "routed")
        return key, record, wallet, get_balance(conn, wallet).available_micros


@pytest.mark.parametrize("budget", [1_000_000, None], ids=["checked budget", "no budget"])
def test_a_wallet_refusal_gives_back_the_budget_the_hold_had_taken(gateway, budget: int | None):
    # A checked budget hold runs at once and is undone at once; an unchecked one (no limit) is
    # counted with the batch's other changes, and is undone with them.
    services = gateway.services
    now = services.clock()
    key, record, wallet, _ = budgeted_key(gateway, "budgeted", budget)
    assert post(gateway, key).status_code == 200  # the key's spend rows exist from now on
    with services.db.write() as conn:  # another request holds all but one micro of the wallet
        available = get_balance(conn, wallet).available_micros
        create_pending(
            conn,
            debit_account_id=wallet,
            credit_account_id=SYSTEM_REVENUE["routed"],
            amount_micros=available - 1,
            now=now,
            expires_at=now + timedelta(seconds=60),
        )
    response = post(gateway, key)
    assert response.status_code == 402
    assert response.json()["error"]["source"] == "wallet"
    with services.db.read() as conn:
        assert get_spend(conn, record.id, TOTAL).held_micros == 0
        assert get_balance(conn, wallet).available_micros == 1
    gateway.audit_ok()


def test_rate_limit_refuses_the_request_over_the_limit_with_retry_after(gateway):
    key = gateway.new_key(settlement="routed", rpm_limit=2)
    assert [post(gateway, key).status_code for _ in range(2)] == [200, 200]
    refused = post(gateway, key)
    assert refused.status_code == 429
    assert refused.json()["error"]["source"] == "budget"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert last_receipt(gateway, key)["error_code"] == "rate_limit_exceeded"
    gateway.audit_ok()


def test_upstream_timeout_is_a_504_from_the_upstream(gateway):
    with gateway.services.db.write() as conn:
        update_route(conn, "rt-gpt-4o-mini-routed", options={"timeout": True, "timeout_ms": 10})
    response = post(gateway, gateway.routed_key)
    assert response.status_code == 504
    assert response.json()["error"]["source"] == "upstream"
    receipt = last_receipt(gateway, gateway.routed_key)
    assert receipt["attempts"][0]["error_class"] == "timeout"
    assert receipt["charge_micros"] == 0
    gateway.audit_ok()


def test_backup_route_serves_when_the_first_fails_and_only_it_is_charged(gateway):
    now = gateway.services.clock()
    with gateway.services.db.write() as conn:
        update_route(conn, "rt-gpt-4o-mini-routed", options={"fail_status": 503})
        create_route(
            conn,
            Route(
                id="rt-backup",
                model="gpt-4o-mini",
                provider="simulated",
                base_url="",
                upstream_model="gpt-4o-mini",
                settlement="routed",
                prices=Prices(100_000, 400_000, 50_000),
                costs=Prices(80_000, 300_000, 40_000),
                priority=200,
            ),
            now,
        )
    with_backups = gateway.new_key(settlement="routed", backup_routes=True)
    served = post(gateway, with_backups)
    assert served.status_code == 200
    assert served.headers["x-glasskey-route"] == "rt-backup"
    receipt = last_receipt(gateway, with_backups)
    assert [a["status"] for a in receipt["attempts"]] == ["failed", "succeeded"]
    assert receipt["route_id"] == "rt-backup"
    assert receipt["input_price_per_mtok_micros"] == 100_000
    assert receipt["charge_micros"] == int(served.headers["x-glasskey-charge-micros"]) > 0
    without = gateway.new_key(settlement="routed", backup_routes=False)
    refused = post(gateway, without)
    assert refused.status_code == 502
    assert len(last_receipt(gateway, without)["attempts"]) == 1
    gateway.audit_ok()


def test_sweep_releases_a_stale_hold_and_the_budget_it_held(gateway):
    services = gateway.services
    now = services.clock()
    _, record, wallet, before = budgeted_key(gateway, "crashed")
    with services.db.write() as conn:
        period = hold_budget(conn, record.id, record.policy, 5_000, now)
        create_pending(
            conn,
            debit_account_id=wallet,
            credit_account_id=SYSTEM_REVENUE["routed"],
            amount_micros=5_000,
            now=now,
            expires_at=now + timedelta(seconds=60),
            key_id=record.id,
            budget_period=period,
        )
    with services.db.write() as conn:
        assert sweep_expired_holds(conn, now + timedelta(seconds=30)) == 0
        assert sweep_expired_holds(conn, now + timedelta(seconds=61)) == 1
    with services.db.read() as conn:
        assert get_balance(conn, wallet).available_micros == before
        assert get_spend(conn, record.id, TOTAL).held_micros == 0
    gateway.audit_ok()


class _ReportsThenCuts:
    """An upstream that reports input usage, then breaks before writing a word."""

    name = "simulated"

    async def chat(self, target, body):
        raise AssertionError("streams only")

    async def embed(self, target, body):
        raise AssertionError("streams only")

    async def stream_chat(self, target, body, *, pauses=False):
        from glasskey.providers.base import StreamCut

        base = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": target.upstream_model}
        yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
        yield {**base, "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 0, "total_tokens": 12}}
        raise StreamCut("simulated", 502, "cut before any output", error_type="stream_cut")


def test_zero_output_with_an_error_costs_nothing_even_with_reported_usage(gateway):
    gateway.services.providers["simulated"] = _ReportsThenCuts()
    response = post(gateway, gateway.routed_key, {**CHAT, "stream": True})
    assert response.status_code == 200
    assert '"error"' in response.text and "[DONE]" not in response.text
    receipt = last_receipt(gateway, gateway.routed_key)
    assert receipt["status"] == "failed"
    assert receipt["charge_micros"] == 0
    assert "reported_usage_not_billed_no_output" in receipt["flags"]
    gateway.audit_ok()
