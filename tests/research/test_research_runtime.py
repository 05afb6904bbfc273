"""The expected runtime comes from the routes' receipts per output token, else measured latency, else a default."""

from __future__ import annotations

import statistics

import httpx
from sqlalchemy import select, update

from glasskey.store.tables import receipts, routes
from research_helpers import auth, job_body, upload_samples


def preflight(gateway, key, ids):
    return httpx.post(f"{gateway.v1}/research/preflight", headers=auth(key), json=job_body(ids)).json()["runtime"]


def test_runtime_moves_from_the_default_to_the_routes_speed_per_output_token(gateway):
    key = gateway.routed_key
    ids = upload_samples(gateway.v1, key)
    first = preflight(gateway, key, ids)
    assert first["p50_ms"] == 2_000 + 10_000  # one round of map calls and the analysis, at the stated defaults
    assert all("an assumption, not a measurement" in line for line in first["how"][:2])
    with gateway.services.db.write() as conn:  # a measurable latency, so the speed is not zero
        conn.execute(update(routes).values(options={"latency_ms": 20}))
    for model in ("gpt-4o-mini", "claude-sonnet-4-5"):
        for n in range(5):
            body = {"model": model, "messages": [{"role": "user", "content": f"hello {n}"}]}
            assert httpx.post(f"{gateway.v1}/chat/completions", headers=auth(key), json=body).status_code == 200
    runtime = preflight(gateway, key, ids)
    with gateway.services.db.read() as conn:
        rows = conn.execute(
            select(receipts.c.route_id, receipts.c.latency_ms, receipts.c.output_tokens).where(
                receipts.c.status == "succeeded"
            )
        ).all()

    def p50_per_token(route_id: str) -> float:
        return float(statistics.median(r.latency_ms / r.output_tokens for r in rows if r.route_id == route_id))

    expected = round(p50_per_token("rt-gpt-4o-mini-routed") * 256) + round(
        p50_per_token("rt-claude-sonnet-4-5-routed") * 256
    )
    assert runtime["p50_ms"] == expected > 0
    assert "route rt-gpt-4o-mini-routed's speed over its last 5 successful receipts" in runtime["how"][0]
