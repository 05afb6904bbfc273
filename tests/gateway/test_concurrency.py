"""Many requests racing for one wallet: the floor holds, exactly the funded ones succeed."""

from __future__ import annotations

import asyncio

import httpx

from glasskey.keys.policy import KeyPolicy
from glasskey.keys.service import create_key
from glasskey.orgs.service import create_org, get_wallet, top_up
from glasskey.pricing.catalog import Prices
from glasskey.routing.routes import Route, create_route

MAX_TOKENS = 100
OUTPUT_PRICE = 10_000_000  # $10 per 1M output tokens: 100 tokens cost exactly 1_000 micros


def test_200_requests_against_a_wallet_funded_for_50(gateway_any_db):
    gateway = gateway_any_db
    services = gateway.services
    now = services.clock()
    with services.db.write() as conn:
        org = create_org(conn, "race", now)
        # Input is free and the simulated route always writes max_tokens, so hold == charge.
        create_route(
            conn,
            Route(
                id="rt-race",
                model="gpt-4o",
                provider="simulated",
                base_url="",
                upstream_model="gpt-4o",
                settlement="routed",
                prices=Prices(0, OUTPUT_PRICE, 0),
                costs=Prices(0, OUTPUT_PRICE // 2, 0),
                options={"output_tokens": "max"},
            ),
            now,
        )
        top_up(conn, org.id, "routed", 50 * 1_000, now)
        _, key = create_key(
            conn, pepper=services.pepper, org_id=org.id, name="racer", policy=KeyPolicy(settlement="routed"), now=now
        )

    async def one(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post(
            "/chat/completions",
            json={"model": "gpt-4o", "messages": [{"role": "user", "content": "go"}], "max_tokens": MAX_TOKENS},
        )

    async def race() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(
            base_url=gateway.v1, headers={"authorization": f"Bearer {key}"}, limits=limits, timeout=120
        ) as client:
            return await asyncio.gather(*(one(client) for _ in range(200)))

    responses = asyncio.run(race())
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 50
    assert statuses.count(402) == 150
    assert {r.json()["error"]["source"] for r in responses if r.status_code == 402} == {"wallet"}
    assert sum(int(r.headers["x-glasskey-charge-micros"]) for r in responses if r.status_code == 200) == 50_000
    with services.db.read() as conn:
        wallet = get_wallet(conn, org.id, "routed")
        assert wallet.balance.available_micros == 0
        assert wallet.balance.held_micros == 0
        from glasskey.receipts.records import list_receipts

        page = list_receipts(conn, org_id=org.id, limit=200)
    assert len(page.data) == 200
    assert sum(r["charge_micros"] for r in page.data) == 50_000
    gateway.audit_ok()
