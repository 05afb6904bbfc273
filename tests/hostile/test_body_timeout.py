"""Issue 18 #9: a client that stalls its body is cut after the body read timeout (408 ``source:
client``, a receipt, the connection closed) while normal traffic goes on; requests in flight per
client address are capped (``serving.AddressCap``)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from conftest_helpers import make_settings
from gateway_fixtures import Gateway, _gateway
from glasskey.services import build_services
from glasskey.serving import AddressCap
from glasskey.store.tables import receipts

TIMEOUT_SECONDS = 1.0
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 5}


@pytest.fixture
def impatient_gateway(tmp_path) -> Iterator[Gateway]:
    yield from _gateway(build_services(make_settings(tmp_path, body_read_timeout_seconds=TIMEOUT_SECONDS)))


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 1 << 30


def _answer_of(sock: socket.socket, wait_seconds: float) -> bytes:
    """One HTTP answer read off ``sock`` (head and a body of its content-length), or what came."""
    sock.settimeout(wait_seconds)
    data = b""
    try:
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _content_length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        pass
    return data


def test_a_stalled_body_is_cut_with_a_408_and_a_receipt_while_others_are_served(impatient_gateway: Gateway):
    gateway = impatient_gateway
    host, port = gateway.base_url.removeprefix("http://").split(":")
    body = json.dumps(CHAT).encode()
    stalled = socket.create_connection((host, int(port)))
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {gateway.routed_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    began = time.monotonic()
    stalled.sendall(head + body[:10])  # and then nothing more
    served = [
        httpx.post(
            f"{gateway.v1}/chat/completions", headers={"authorization": f"Bearer {gateway.routed_key}"}, json=CHAT
        ).status_code
        for _ in range(3)
    ]
    answer = _answer_of(stalled, 10)
    elapsed = time.monotonic() - began
    answered = time.monotonic()
    stalled.settimeout(3)
    try:
        closed = stalled.recv(1) == b""  # the server hung up: the connection is not left to the client
    except TimeoutError:
        closed = False
    closed_after = time.monotonic() - answered
    stalled.close()

    assert served == [200, 200, 200]
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 408"), answer[:200]
    error = json.loads(rest.split(b"\r\n\r\n", 1)[1])["error"]
    assert error["source"] == "client" and error["code"] == "body_read_timeout"
    assert TIMEOUT_SECONDS <= elapsed < TIMEOUT_SECONDS + 5
    assert closed and closed_after < 1  # the 408 says `connection: close`, and the server hangs up
    with gateway.services.db.read() as conn:
        row = conn.execute(select(receipts).where(receipts.c.request_id == error["request_id"])).one()
    assert (row.status, row.http_status, row.error_source, row.error_code) == (
        "failed",
        408,
        "client",
        "body_read_timeout",
    )


def test_a_stalled_quote_body_is_cut_too(impatient_gateway: Gateway):
    gateway = impatient_gateway
    host, port = gateway.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as stalled:
        stalled.sendall(
            f"POST /v1/quote HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {gateway.routed_key}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{".encode()
        )
        answer = _answer_of(stalled, 10)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "body_read_timeout"


def test_requests_in_flight_per_address_are_capped_and_the_next_is_a_429():
    release = asyncio.Event()
    started: list[str] = []

    async def slow_app(scope: Any, receive: Any, send: Any) -> None:
        started.append(scope["client"][0])
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    capped = AddressCap(slow_app, per_address_max=2)

    async def scenario() -> list[int]:
        transport = httpx.ASGITransport(app=capped, client=("192.0.2.5", 1234))
        other = httpx.ASGITransport(app=capped, client=("192.0.2.6", 1234))
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://t") as one,
            httpx.AsyncClient(transport=other, base_url="http://t") as two,
        ):
            first = [asyncio.create_task(one.get("/")) for _ in range(2)]
            while len(started) < 2:
                await asyncio.sleep(0.01)
            refused = await one.get("/")
            elsewhere = asyncio.create_task(two.get("/"))  # another address is not held back
            while len(started) < 3:
                await asyncio.sleep(0.01)
            release.set()
            answers = [*(await asyncio.gather(*first)), refused, await elsewhere]
            again = await one.get("/")  # the count went down when they ended
            body = refused.json()["error"]
            assert body["source"] == "client" and body["code"] == "too_many_connections"
            assert refused.headers["retry-after"] == "1"
            return [answer.status_code for answer in answers] + [again.status_code]

    assert asyncio.run(scenario()) == [200, 200, 429, 200, 200]
    assert capped._in_flight == {}
