"""One client's poison never fails another's request (issue 18 #1, the standing version).

While poisoners send bodies whose text cannot be stored (``{"model": "z\\u0000"}`` and its
cousins, with a valid key, a garbage key and none, on every endpoint with a body) and then every
other case of the bad-input matrix, legitimate requests and streams run beside them. Every
legitimate request must succeed with its receipt and charge, every poisoned one must be refused
as the client's (or the key's) fault, and the ledger audit stays clean. Before the edge refused
NUL, 0 of 300 legitimate requests succeeded this way on PostgreSQL: the poisoned receipt failed
the group commit it shared with them.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import httpx
from sqlalchemy import select

from gateway_fixtures import Gateway
from glasskey.store.tables import receipts
from hostile.conftest import Call, call
from hostile.matrix import CHAT, body_matrix

LEGITIMATE = 100
CONCURRENCY = 8
POISONERS = 4


def unstorable(key: str) -> list[Call]:
    """The bodies whose text cannot be stored, with a valid key, a garbage key and none."""
    messages = [{"role": "user", "content": "x"}]
    bodies: list[tuple[str, dict[str, Any]]] = [
        ("chat/completions", {"model": "z\x00", "messages": messages}),
        ("chat/completions", {"model": "z\x00", "messages": messages, "stream": True}),
        ("chat/completions", {**CHAT, "user": "u\x00"}),
        ("chat/completions", {**CHAT, "metadata": {"k": "\x00"}}),
        ("chat/completions", {**CHAT, "model": "m" * 100_000}),
        ("embeddings", {"model": "z\x00", "input": "x"}),
        ("embeddings", {"model": "text-embedding-3-small", "input": ["\x00"]}),
        ("quote", {"model": "z\x00", "messages": messages}),
    ]
    return [
        call("POST", path, body, key=anyone, label=path)
        for (path, body), anyone in itertools.product(bodies, [key, "gk-nope-secret", None])
    ]


async def _run(gateway: Gateway) -> tuple[list[tuple[str, bool, int]], list[int]]:
    stop = asyncio.Event()
    refused: list[int] = []
    legitimate: list[tuple[str, bool, int]] = []  # request id, stream, and whether it ended well
    headers = {"authorization": f"Bearer {gateway.routed_key}"}
    limit = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(base_url=gateway.v1, timeout=60) as client:
        # Half the poisoners send the unstorable bodies over and over, half walk the whole matrix.
        matrix = [item for item in body_matrix(gateway.routed_key) if not item.label.endswith("too_large")]
        kinds = [unstorable(gateway.routed_key), matrix]

        async def poisoner(number: int) -> None:
            cases = kinds[number % 2]
            for index in itertools.count(number * 13):
                if stop.is_set():
                    return
                item = cases[index % len(cases)]
                response = await client.request(item.method, item.path, content=item.content, headers=item.headers)
                error = response.json()["error"]
                assert 400 <= response.status_code < 500 and error["source"] in ("client", "key"), response.text[:300]
                refused.append(response.status_code)

        async def legitimate_request(index: int) -> None:
            async with limit:
                stream = index % 2 == 1
                if not stream:
                    response = await client.post("chat/completions", json=CHAT, headers=headers)
                    legitimate.append((response.headers["x-request-id"], False, response.status_code))
                    return
                async with client.stream(
                    "POST", "chat/completions", json={**CHAT, "stream": True}, headers=headers
                ) as response:
                    lines = [line async for line in response.aiter_lines()]
                ended = response.status_code == 200 and "data: [DONE]" in lines
                legitimate.append((response.headers["x-request-id"], True, 200 if ended else 599))

        poisoning = [asyncio.create_task(poisoner(number)) for number in range(POISONERS)]
        await asyncio.sleep(0.05)  # the poison is already flowing when the first legitimate request arrives
        try:
            await asyncio.gather(*(legitimate_request(index) for index in range(LEGITIMATE)))
        finally:
            stop.set()
            await asyncio.gather(*poisoning)
    return legitimate, refused


def test_poisoned_requests_never_fail_the_legitimate_requests_beside_them(hostile_gateway: Gateway) -> None:
    legitimate, refused = asyncio.run(_run(hostile_gateway))
    assert len(legitimate) == LEGITIMATE
    assert [status for _, _, status in legitimate] == [200] * LEGITIMATE
    assert len(refused) >= LEGITIMATE  # the poison really ran beside them
    request_ids = [request_id for request_id, _, _ in legitimate]
    with hostile_gateway.services.db.read() as conn:
        rows = conn.execute(
            select(receipts.c.request_id, receipts.c.status, receipts.c.charge_micros).where(
                receipts.c.request_id.in_(request_ids)
            )
        ).all()
    assert len(rows) == LEGITIMATE
    assert all(row.status == "succeeded" and row.charge_micros > 0 for row in rows)
    hostile_gateway.audit_ok()
