"""A hostile upstream server: whatever a route's host answers, the gateway stays right and bounded.

One raw loopback server (``raw_upstream``: exact bytes, no library's idea of HTTP) plays every
kind of broken host behind one ``openai_compatible`` route, chosen per test through ``script``:
a 2 GiB ``content-length``, an endless chunked body or event stream, silence before the headers,
a body that stops mid-way, bytes that are not JSON or not SSE, a connection closed mid-body,
usage counts past 2^64 (``test_giant_usage`` has the full table; one case runs here), and JSON of
the wrong types. For each, JSON and streamed:

* attribution: a failure is the upstream's (``source: upstream`` to the client and on the
  receipt, the route's provider named), never the route's, the client's or the gateway's;
* money: the charge is within the hold, and the ledger audit is clean at the end;
* memory: repeating the heavy answers leaves the process's RSS (the gateway runs in this
  process) within a generous bound, so nothing read from an upstream is kept.

The route's breaker is made lenient: a breaker opening after five failures is right in
production, but here it would turn the upstream's failures into ``no_healthy_route``.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from conftest_helpers import make_settings
from gateway_fixtures import Gateway, _gateway
from glasskey.routing.health import BreakerPolicy, HealthBoard
from glasskey.services import build_services
from hostile.conftest import COMPATIBLE_MODEL, add_compatible_route, receipt_of
from hostile.test_giant_usage import USAGES, completion_of, stream_of
from raw_upstream import Upstream, answer, chunked, raw_upstream_thread, read_request, rss_bytes

PROVIDER = "openai_compatible"
TIMEOUTS = {"timeout_first_byte_ms": 300, "timeout_chunk_gap_ms": 300, "timeout_total_ms": 5_000}
RSS_GROWTH_BYTES_MAX = 150 * 1024 * 1024  # generous: the cap is 32 MiB per answer, leaks were ~32 MiB each
HEAVY_REPEATS = 5

SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
)
CHUNKED_JSON_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
)
MIB = b"x" * (1024 * 1024 - 16)
MIB_OF_EVENTS = (
    chunked(b'data: {"choices": [{"index": 0, "delta": {"content": "' + b"y" * 65_000 + b'"}}]}\n\n')[:-5] * 16
)
CONTENT_EVENT = (
    b"data: "
    + orjson.dumps(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": None}],
        }
    )
    + b"\n\n"
)

Writer = asyncio.StreamWriter
Reader = asyncio.StreamReader


async def endless(writer: Writer, head: bytes, piece: bytes) -> None:
    writer.write(head)
    while not writer.is_closing():
        writer.write(piece)
        await writer.drain()


async def silent(reader: Reader) -> None:
    await reader.read()  # nothing is sent until the client gives up and closes


def whole(body: bytes, content_type: str = "application/json") -> bytes:
    return answer(body, f"content-type: {content_type}", "connection: close")


# What the host does, by case: (JSON answer, stream answer), each given the reader and writer.
Behaviour = Callable[[Reader, Writer], Any]


async def _write(writer: Writer, data: bytes) -> None:
    writer.write(data)


def writes(data: bytes) -> Behaviour:
    return lambda reader, writer: _write(writer, data)


async def _drip_then_silence(reader: Reader, writer: Writer, head: bytes, first: bytes) -> None:
    writer.write(head + first)
    await writer.drain()
    await silent(reader)


CASES: dict[str, tuple[Behaviour, Behaviour]] = {
    "oversized": (
        lambda r, w: endless(w, b"HTTP/1.1 200 OK\r\ncontent-length: 2147483648\r\n\r\n", b"x" * 1024 * 1024),
        lambda r, w: endless(
            w,
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: 2147483648\r\n\r\n",
            b"x" * 1024 * 1024,
        ),
    ),
    "endless": (
        lambda r, w: endless(w, CHUNKED_JSON_HEAD, chunked(MIB)[:-5]),
        lambda r, w: endless(w, SSE_HEAD, MIB_OF_EVENTS),
    ),
    "silent": (lambda r, w: silent(r), lambda r, w: silent(r)),
    "slow": (
        lambda r, w: _drip_then_silence(r, w, CHUNKED_JSON_HEAD, chunked(b'{"id": "c", ')[:-5]),
        lambda r, w: _drip_then_silence(r, w, SSE_HEAD, chunked(CONTENT_EVENT)[:-5]),
    ),
    "malformed": (
        writes(whole(b'{"id": "c", "choices": [{"message": ')),
        writes(SSE_HEAD + chunked(b"data: {not json at all\n\n", b"data: [DONE]\n\n")),
    ),
    "truncated": (
        writes(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 5000\r\n\r\n" + b'{"id": "c"'),
        writes(SSE_HEAD + chunked(CONTENT_EVENT)[:-5]),  # then the connection closes: no last chunk
    ),
    "giant_usage": (
        writes(whole(completion_of(USAGES["float_1e40"]))),
        writes(SSE_HEAD + chunked(stream_of(USAGES["beyond_u64"]))),
    ),
    "wrong_types": (
        writes(whole(b'{"id": "c", "object": "chat.completion", "choices": "none", "usage": [1, 2]}')),
        writes(SSE_HEAD + chunked(b'data: {"choices": "none", "usage": "many"}\n\n', b"data: [DONE]\n\n")),
    ),
}
SUCCEEDS = {"giant_usage"}
HEAVY = ("oversized", "endless")


@pytest.fixture(scope="module")
def host() -> Iterator[tuple[Upstream, dict[str, str]]]:
    script = {"case": "giant_usage"}

    async def serve(upstream: Upstream, reader: Reader, writer: Writer, index: int) -> None:
        request = await read_request(upstream, reader)
        if request is None:
            return
        stream = b'"stream":true' in request.replace(b" ", b"")
        await CASES[script["case"]][1 if stream else 0](reader, writer)

    with raw_upstream_thread(serve) as upstream:
        yield upstream, script


@pytest.fixture(scope="module")
def routed(host: tuple[Upstream, dict[str, str]], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    upstream, script = host
    services = build_services(make_settings(tmp_path_factory.mktemp("hostile-upstream")))
    lenient = BreakerPolicy(consecutive_failures=1_000_000, minimum_requests=1_000_000)
    services.health = HealthBoard(time.monotonic, lenient)
    for gateway in _gateway(services):
        key = add_compatible_route(gateway, upstream.url("/v1"), options=TIMEOUTS)
        yield gateway, key, script


def ask(gateway: Gateway, key: str, stream: bool) -> tuple[int, dict[str, Any] | None, str]:
    """(status, the error the client was told of or None, request id)."""
    body = {"model": COMPATIBLE_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50}
    headers = {"authorization": f"Bearer {key}"}
    if not stream:
        response = httpx.post(f"{gateway.v1}/chat/completions", json=body, headers=headers, timeout=30)
        error = response.json().get("error") if response.status_code != 200 else None
        return response.status_code, error, response.headers["x-request-id"]
    with httpx.stream(
        "POST", f"{gateway.v1}/chat/completions", json={**body, "stream": True}, headers=headers, timeout=30
    ) as response:
        request_id = response.headers["x-request-id"]
        if response.status_code != 200:  # refused before the stream began: a JSON error
            return response.status_code, orjson.loads(response.read())["error"], request_id
        last = ""  # only the last event is kept: the test's own memory must not hide the gateway's
        for line in response.iter_lines():
            if line.startswith("data: "):
                last = line.removeprefix("data: ")
    if last == "[DONE]":
        return 200, None, request_id
    error = orjson.loads(last).get("error") if last else None
    return 200, error or {"message": "the stream ended without [DONE] or an error"}, request_id


def settled(gateway: Gateway, request_id: str) -> Any:
    deadline = time.monotonic() + 10
    while (receipt := receipt_of(gateway, request_id)) is None:
        assert time.monotonic() < deadline, f"no receipt for {request_id}"
        time.sleep(0.02)
    return receipt


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_hostile_upstream_is_blamed_charged_within_the_hold_and_forgotten(
    routed: tuple[Gateway, str, dict[str, str]], case: str, stream: bool
) -> None:
    gateway, key, script = routed
    script["case"] = case
    repeats = HEAVY_REPEATS if case in HEAVY else 1
    if case in HEAVY:
        ask(gateway, key, stream)  # the first sets up pools and buffers, so growth is what stays
    gc.collect()
    before = rss_bytes()
    outcomes = [ask(gateway, key, stream) for _ in range(repeats)]
    gc.collect()
    grown = rss_bytes() - before
    print(f"{case} {'stream' if stream else 'json'}: RSS growth {grown / 2**20:.1f} MiB over {repeats}")
    for status, error, request_id in outcomes:
        if case in SUCCEEDS:
            assert error is None and status == 200
        else:
            assert error is not None, (case, status)
            assert error.get("source") == "upstream", error
            assert PROVIDER in error["message"] or error.get("provider") == PROVIDER, error
            assert status in (200, 502, 504)  # 200: the stream had begun; the error came in band
        receipt = settled(gateway, request_id)
        if case in SUCCEEDS:
            assert receipt.status == "succeeded"
        else:
            assert receipt.status == "failed" and receipt.error_source == "upstream", receipt.error_message
        assert 0 <= receipt.charge_micros <= receipt.hold_micros
    assert grown < RSS_GROWTH_BYTES_MAX
    gateway.audit_ok()
