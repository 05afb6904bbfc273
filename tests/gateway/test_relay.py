"""The stream relay holds what it forwards and sends it whenever the stream is about to wait.

Events parsed from one upstream read leave in one write; nothing stays in the buffer while the
upstream is silent, so a client still sees each part of an answer as soon as the gateway has it.
"""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from gateway_fixtures import Gateway
from glasskey.gateway.streaming import RelayResponse
from glasskey.providers.http import Timeouts, UpstreamHTTP
from glasskey.providers.sse import PAUSE
from glasskey.store.tables import receipts
from scripted_upstream import Answer, scripted_upstream, slow_chunks

SCOPE: dict[str, Any] = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}


def test_the_first_event_goes_out_at_once_and_the_rest_in_one_write_before_the_relay_waits() -> None:
    sent: list[MutableMapping[str, Any]] = []
    client_has_first_part = asyncio.Event()

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)
        if b"A" in message.get("body", b""):
            client_has_first_part.set()

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)  # the client never leaves
        return {"type": "http.disconnect"}

    async def relay(emit: Any, flush: Any) -> None:
        await emit(b"first")  # sent at once: the time to first token
        await emit(b"A")
        await emit(b"B")
        await flush()  # as the relay does at each PAUSE of its stream
        # Were A and B still buffered, this would time out: the client must have them now.
        await asyncio.wait_for(client_has_first_part.wait(), timeout=10)
        await emit(b"C")

    asyncio.run(RelayResponse(relay, {})(SCOPE, receive, send))
    bodies = [(m["body"], m["more_body"]) for m in sent if m["type"] == "http.response.body"]
    assert bodies == [(b"first", True), (b"AB", True), (b"C", False)]


@pytest.mark.parametrize("pauses", [True, False])
def test_the_upstream_reader_says_it_pauses_after_each_network_read_when_asked(pauses: bool) -> None:
    seen: list[str] = []

    async def read(base_url: str) -> None:
        http = UpstreamHTTP()
        try:
            events = http.post_sse("p", f"{base_url}/x", headers={}, body={}, timeouts=Timeouts(), pauses=pauses)
            async for event in events:
                seen.append("pause" if event is PAUSE else event.data)  # type: ignore[union-attr]
        finally:
            await http.aclose()

    # Two events in one write, a pause, then a third: the pause lets the reads come apart.
    chunks = slow_chunks(b"data: 1\n\ndata: 2\n\n", b"data: 3\n\n", pause_seconds=0.2)
    with scripted_upstream(lambda request: Answer(200, chunks, {"content-type": "text/event-stream"})) as (url, _):
        asyncio.run(read(url))
    assert seen == (["1", "2", "pause", "3", "pause"] if pauses else ["1", "2", "3"])


def test_the_end_of_a_stream_is_sent_only_once_its_receipt_and_charge_are_committed(gateway: Gateway) -> None:
    # A stream's success, for its client, is its `data: [DONE]`: like a JSON answer, it may only
    # leave once the charge and the receipt are committed, or a killed process could lose them.
    writer = gateway.services.writer
    submit = writer.submit

    async def slow_commits(work: Any, *, durable: bool = True, **options: Any) -> Any:
        if durable:
            await asyncio.sleep(0.3)
        return await submit(work, durable=durable, **options)

    writer.submit = slow_commits  # type: ignore[method-assign,assignment]
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20, "stream": True}
    found_at_the_end: Any = None
    with httpx.stream(
        "POST", f"{gateway.v1}/chat/completions", json=body, headers={"authorization": f"Bearer {gateway.routed_key}"}
    ) as response:
        request_id = response.headers["x-request-id"]
        lines = []
        for line in response.iter_lines():
            lines.append(line)
            if line == "data: [DONE]":
                with gateway.services.db.read() as conn:
                    found_at_the_end = conn.execute(
                        select(receipts.c.status, receipts.c.charge_micros).where(receipts.c.request_id == request_id)
                    ).first()
    assert lines.count("data: [DONE]") == 1
    assert found_at_the_end is not None, "the client saw the end before the receipt existed"
    assert found_at_the_end.status == "succeeded" and found_at_the_end.charge_micros > 0
    gateway.audit_ok()
