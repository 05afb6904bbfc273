"""One hostile request never fails the others that share its group commit (PostgreSQL refuses NUL in text)."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import func, select

from gateway_fixtures import Gateway
from glasskey.store.tables import receipts

CHAT = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}


async def _traffic(gateway: Gateway, rounds: int) -> tuple[list[httpx.Response], list[httpx.Response]]:
    headers = {"Authorization": f"Bearer {gateway.routed_key}"}
    async with httpx.AsyncClient(base_url=gateway.v1, headers=headers, timeout=30) as client:

        async def poison() -> httpx.Response:
            return await client.post("/chat/completions", json={**CHAT, "model": "z\u0000" * 3})

        async def legit(index: int) -> httpx.Response:
            stream = index % 2 == 1
            response = await client.post("/chat/completions", json={**CHAT, "model": "gpt-4o-mini", "stream": stream})
            await response.aread()
            return response

        good: list[httpx.Response] = []
        bad: list[httpx.Response] = []
        for _ in range(rounds):
            answers = await asyncio.gather(poison(), *(legit(i) for i in range(6)), poison())
            bad += [answers[0], answers[-1]]
            good += answers[1:-1]
        return good, bad


def test_a_nul_in_the_model_name_fails_only_its_own_request(gateway_any_db: Gateway):
    good, bad = asyncio.run(_traffic(gateway_any_db, rounds=10))
    assert [r.status_code for r in good] == [200] * len(good)
    for response in good:
        if response.headers["content-type"].startswith("text/event-stream"):
            assert response.text.rstrip().endswith("data: [DONE]"), response.text[-200:]
    for response in bad:
        assert 400 <= response.status_code < 500, response.text
        assert response.json()["error"]["source"] in {"client", "model"}
    with gateway_any_db.services.db.read() as conn:
        stored = conn.scalar(select(func.count()).select_from(receipts))
    # Every request, the hostile ones too, left its receipt.
    assert stored == len(good) + len(bad)
    gateway_any_db.audit_ok()
