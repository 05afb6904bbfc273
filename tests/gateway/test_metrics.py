"""Prometheus metrics at /metrics: per route attempts, errors, latency and breaker; per wallet charges."""

from __future__ import annotations

import httpx

from glasskey.routing.routes import update_route

ADMIN = {"authorization": "Bearer admin-token-for-tests-0123456789"}


def test_metrics_need_the_admin_token(gateway):
    assert httpx.get(f"{gateway.base_url}/metrics").status_code == 401
    assert httpx.get(f"{gateway.base_url}/metrics", headers={"authorization": "Bearer wrong"}).status_code == 401


def test_metrics_count_attempts_errors_charges_and_breaker_state(gateway):
    headers = {"authorization": f"Bearer {gateway.routed_key}"}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
    ok = httpx.post(f"{gateway.v1}/chat/completions", json=body, headers=headers)
    charged = int(ok.headers["x-glasskey-charge-micros"])
    with gateway.services.db.write() as conn:
        update_route(conn, "rt-gpt-4o-mini-routed", options={"fail_status": 503})
    httpx.post(f"{gateway.v1}/chat/completions", json=body, headers=headers)
    text = httpx.get(f"{gateway.base_url}/metrics", headers=ADMIN).text
    route = 'route="rt-gpt-4o-mini-routed"'
    assert f'glasskey_route_attempts_total{{outcome="succeeded",provider="simulated",{route}}} 1.0' in text
    assert f'glasskey_route_errors_total{{error_class="server_error",{route}}} 1.0' in text
    assert f"glasskey_route_latency_seconds_count{{{route}}} 2.0" in text
    assert f"glasskey_route_breaker_state{{{route}}} 0.0" in text
    assert f'glasskey_wallet_charges_micros_total{{org="{gateway.org_id}",wallet="routed"}} {float(charged)}' in text
    assert 'glasskey_requests_total{endpoint="chat.completions",source="upstream",status="502"} 1.0' in text
