"""glasskey's upstream HTTP client against real loopback servers that write raw bytes.

Each server here is an asyncio server written for its test: it counts the connections it
accepts and answers with exactly the bytes the test scripts (framing, early closes, silences), so
what is tested is the client's handling of the wire, on the default loop and on uvloop.
"""

from __future__ import annotations

import asyncio
import datetime
import gzip
import socket
import ssl
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from glasskey.providers import wire
from glasskey.providers.base import ProviderError
from glasskey.providers.http import Timeouts, UpstreamHTTP, UpstreamHTTPError
from glasskey.providers.sse import Event

Run = Callable[[Coroutine[Any, Any, Any]], Any]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Run:
    """Run a test's coroutine on a fresh loop of each kind: production runs uvloop, tests asyncio."""
    runner: Run = uvloop.run if request.param == "uvloop" else asyncio.run
    return runner


# -- a raw upstream ------------------------------------------------------------------------


@dataclass
class Upstream:
    port: int = 0
    scheme: str = "http"
    connections: int = 0  # accepted
    requests: list[bytes] = field(default_factory=list)
    closed_by_client: int = 0  # connections whose client end closed first

    def url(self, path: str = "/x", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"


Serve = Callable[[Upstream, asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


async def read_request(upstream: Upstream, reader: asyncio.StreamReader) -> bytes | None:
    """One whole request (head and body), or None when the client closed the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        upstream.closed_by_client += 1
        return None
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    request = head + await reader.readexactly(length)
    upstream.requests.append(request)
    return request


def answer(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    lines = [f"HTTP/1.1 {status}", f"content-length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


def answer_once(reply: bytes) -> Serve:
    """Answer one request, then close the connection."""

    async def serve(upstream: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        await read_request(upstream, reader)
        writer.write(reply)

    return serve


def keep_answering(reply: bytes) -> Serve:
    async def serve(upstream: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        while await read_request(upstream, reader) is not None:
            writer.write(reply)

    return serve


@asynccontextmanager
async def raw_upstream(serve: Serve, *, tls: ssl.SSLContext | None = None) -> AsyncIterator[Upstream]:
    upstream = Upstream(scheme="https" if tls else "http")

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream.connections += 1
        try:
            await serve(upstream, reader, writer, upstream.connections)
            await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0, ssl=tls)
    upstream.port = server.sockets[0].getsockname()[1]
    async with server:
        yield upstream


async def until(condition: Callable[[], bool], seconds: float = 2.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.005)


async def post(client: wire.Client, url: str, body: bytes = b"{}") -> tuple[int, bytes]:
    response = await client.request("POST", url, headers={}, body=body)
    try:
        return response.status, await response.read()
    finally:
        response.release()


async def refused(http: UpstreamHTTP, url: str, *, stream: bool) -> ProviderError:
    """The ``ProviderError`` a JSON call (or a stream, read to its end) fails with."""
    with pytest.raises(ProviderError) as caught:
        if stream:
            [event async for event in http.post_sse("p", url, headers={}, body={}, timeouts=Timeouts())]
        else:
            await http.post_json("p", url, headers={}, body={}, timeouts=Timeouts())
    return caught.value


# -- framing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        answer(b'{"a": 1}', "content-type: application/json"),
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunked(b'{"a"', b": 1}"),
        b'HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n{"a": 1}',
    ],
    ids=["content-length", "chunked", "until-close"],
)
def test_every_body_framing_arrives_whole(run: Run, reply: bytes) -> None:
    async def scenario() -> tuple[int, bytes]:
        async with raw_upstream(answer_once(reply)) as upstream:
            client = wire.Client()
            try:
                return await post(client, upstream.url())
            finally:
                await client.aclose()

    assert run(scenario()) == (200, b'{"a": 1}')


def test_the_request_carries_the_clients_framing_and_the_callers_headers(run: Run) -> None:
    async def scenario() -> Upstream:
        async with raw_upstream(keep_answering(answer(b"{}"))) as upstream:
            client = wire.Client()
            headers = {"Authorization": "Bearer k", "content-type": "application/json", "Content-Length": "999"}
            response = await client.request("POST", upstream.url("/v1/x?alt=sse"), headers=headers, body=b'{"q": 1}')
            await response.read()
            response.release()
            await client.aclose()
            return upstream

    upstream = run(scenario())
    head, _, body = upstream.requests[0].partition(b"\r\n\r\n")
    request_line, *lines = head.decode().split("\r\n")
    names = [line.split(":", 1)[0].lower() for line in lines]
    fields = {line.split(":", 1)[0].lower(): line.split(":", 1)[1].strip() for line in lines}
    assert request_line == "POST /v1/x?alt=sse HTTP/1.1"
    assert sorted(names) == sorted(set(names))  # nothing twice: the caller's content-type replaced ours
    assert fields == {
        "host": f"127.0.0.1:{upstream.port}",
        "content-type": "application/json",
        "authorization": "Bearer k",
        "content-length": "8",
        "accept-encoding": "identity",
        "connection": "keep-alive",
    }
    assert body == b'{"q": 1}'


def test_a_get_sends_no_body_and_no_content_length(run: Run) -> None:
    async def scenario() -> tuple[bytes, bytes]:
        async with raw_upstream(keep_answering(answer(b"ok"))) as upstream:
            client = wire.Client()
            response = await client.request("GET", upstream.url("/health"), headers={})
            body = await response.read()
            response.release()
            await client.aclose()
            return upstream.requests[0], body

    request, body = run(scenario())
    assert request.startswith(b"GET /health HTTP/1.1\r\n")
    assert b"content-length" not in request.lower() and b"content-type" not in request.lower()
    assert body == b"ok"


def test_a_header_that_could_smuggle_another_is_refused_before_connecting() -> None:
    async def scenario() -> Upstream:
        async with raw_upstream(keep_answering(answer(b"{}"))) as upstream:
            client = wire.Client()
            with pytest.raises(wire.InvalidRequest):
                await client.request("POST", upstream.url(), headers={"x-a": "1\r\nx-b: 2"}, body=b"{}")
            return upstream

    assert asyncio.run(scenario()).connections == 0


def test_answer_headers_are_case_insensitive_and_repeats_are_joined(run: Run) -> None:
    reply = answer(b"{}", "Retry-After: 7", "X-Many: a", "x-many: b")

    async def scenario() -> wire.Headers:
        async with raw_upstream(keep_answering(reply)) as upstream:
            client = wire.Client()
            response = await client.request("POST", upstream.url(), headers={}, body=b"{}")
            response.release()
            await client.aclose()
            return response.headers

    headers = run(scenario())
    assert (headers["retry-after"], headers.get("RETRY-AFTER"), headers["X-MANY"]) == ("7", "7", "a, b")
    assert "Retry-After" in headers and "missing" not in headers


def test_an_informational_answer_is_skipped_for_the_real_one(run: Run) -> None:
    reply = b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n" + answer(b"ok")

    async def scenario() -> tuple[int, bytes]:
        async with raw_upstream(keep_answering(reply)) as upstream:
            client = wire.Client()
            result = await post(client, upstream.url())
            await client.aclose()
            return result

    assert run(scenario()) == (200, b"ok")


def test_a_chunked_body_is_delivered_piece_by_piece_as_it_arrives(run: Run) -> None:
    first_read = asyncio.Event()

    async def serve(upstream: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        await read_request(upstream, reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await first_read.wait()  # the second piece exists only once the first was read
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")

    async def scenario() -> list[bytes]:
        async with raw_upstream(serve) as upstream:
            client = wire.Client()
            response = await client.request("POST", upstream.url(), headers={}, body=b"{}")
            pieces = []
            async for piece in response:
                pieces.append(piece)
                first_read.set()
            response.release()
            await client.aclose()
            return pieces

    assert run(scenario()) == [b"first", b"second"]


# -- keep-alive ----------------------------------------------------------------------------


def test_sequential_requests_share_one_connection(run: Run) -> None:
    async def scenario() -> tuple[int, int]:
        async with raw_upstream(keep_answering(answer(b"{}"))) as upstream:
            client = wire.Client()
            for _ in range(3):
                assert await post(client, upstream.url()) == (200, b"{}")
            pool, _ = client.pool(upstream.url())
            idle = len(pool.idle)
            await client.aclose()
            return upstream.connections, idle

    assert run(scenario()) == (1, 1)


@pytest.mark.parametrize(
    ("serve", "opened"),
    [
        # The server keeps these two open: only the client's reading of the answer closes them.
        (keep_answering(answer(b"{}", "connection: close")), 2),
        (keep_answering(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n{}"), 2),
        (answer_once(b"HTTP/1.1 200 OK\r\n\r\n{}"), 2),  # delimited by the end of the connection
        (keep_answering(answer(b"{}")), 1),
    ],
    ids=["connection-close", "http-1.0", "until-close", "keep-alive"],
)
def test_only_a_kept_alive_http_1_1_answer_leaves_its_connection_reusable(run: Run, serve: Serve, opened: int) -> None:
    async def scenario() -> int:
        async with raw_upstream(serve) as upstream:
            client = wire.Client()
            for _ in range(2):
                assert await post(client, upstream.url()) == (200, b"{}")
            await client.aclose()
            return upstream.connections

    assert run(scenario()) == opened


def test_a_connection_the_server_closed_while_idle_is_replaced(run: Run) -> None:
    async def serve(upstream: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        await read_request(upstream, reader)
        writer.write(answer(b"{}"))
        await writer.drain()  # then the server's idle timeout closes the connection

    async def scenario() -> int:
        async with raw_upstream(serve) as upstream:
            client = wire.Client()
            assert await post(client, upstream.url()) == (200, b"{}")
            await asyncio.sleep(0.05)
            assert await post(client, upstream.url()) == (200, b"{}")
            await client.aclose()
            return upstream.connections

    assert run(scenario()) == 2


def test_a_request_the_server_drops_as_the_connection_is_reused_is_sent_once_more(run: Run) -> None:
    # The race urllib3 and httpcore also retry: the server closes its idle connection just as the
    # next request goes out on it, so that request fails before a byte of an answer.
    async def serve(upstream: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        while await read_request(upstream, reader) is not None:
            if index == 1 and len(upstream.requests) == 2:
                return  # closes without answering
            writer.write(answer(b'{"n": %d}' % len(upstream.requests)))

    async def scenario() -> tuple[list[tuple[int, bytes]], Upstream]:
        async with raw_upstream(serve) as upstream:
            client = wire.Client()
            results = [await post(client, upstream.url()) for _ in range(2)]
            await client.aclose()
            return results, upstream

    results, upstream = run(scenario())
    assert results == [(200, b'{"n": 1}'), (200, b'{"n": 3}')]
    assert (upstream.connections, len(upstream.requests)) == (2, 3)


@pytest.mark.parametrize(
    "partial", [b"HTTP/1.1 20", b'HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n{"a"'], ids=["status", "body"]
)
@pytest.mark.parametrize("stream", [False, True])
def test_a_request_that_got_part_of_an_answer_is_never_retried(partial: bytes, stream: bool) -> None:
    async def serve(upstream: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        await read_request(upstream, reader)
        writer.write(answer(b"{}"))
        await read_request(upstream, reader)
        writer.write(partial)  # and the server closes

    async def scenario() -> tuple[ProviderError, Upstream]:
        async with raw_upstream(serve) as upstream:
            http = UpstreamHTTP()
            await http.post_json("p", upstream.url(), headers={}, body={}, timeouts=Timeouts())
            caught = await refused(http, upstream.url(), stream=stream)
            await http.aclose()
            return caught, upstream

    error, upstream = asyncio.run(scenario())
    assert (error.status, error.error_type) == (502, "network_error")
    assert "ConnectionClosed" in error.message
    assert (upstream.connections, len(upstream.requests)) == (1, 2)


@pytest.mark.parametrize("stream", [False, True])
def test_a_server_closing_mid_body_is_a_502_network_error(run: Run, stream: bool) -> None:
    async def serve(upstream: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        await read_request(upstream, reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + b"a\r\ndata: {}\n\n\r\n")

    async def scenario() -> ProviderError:
        async with raw_upstream(serve) as upstream:
            http = UpstreamHTTP()
            caught = await refused(http, upstream.url(), stream=stream)
            await http.aclose()
            return caught

    error = run(scenario())
    assert (error.status, error.error_type) == (502, "network_error")
    assert error.message == "network error talking to the upstream: ConnectionClosed"


def test_an_idle_connection_past_its_keepalive_is_not_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire.pool, "KEEPALIVE_IDLE_S", 0.05)  # where the pool reads it

    async def scenario() -> Upstream:
        async with raw_upstream(keep_answering(answer(b"{}"))) as upstream:
            client = wire.Client()
            await post(client, upstream.url())
            await asyncio.sleep(0.1)
            await post(client, upstream.url())
            await until(lambda: upstream.closed_by_client == 1)
            await client.aclose()
            return upstream

    assert asyncio.run(scenario()).connections == 2


def test_the_pool_never_opens_more_connections_than_its_limit(run: Run) -> None:
    release = asyncio.Event()

    async def serve(upstream: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        while await read_request(upstream, reader) is not None:
            await release.wait()
            writer.write(answer(b"{}"))

    async def scenario() -> tuple[int, int, list[tuple[int, bytes]]]:
        async with raw_upstream(serve) as upstream:
            client = wire.Client(connections_max=2)
            requests = [asyncio.create_task(post(client, upstream.url())) for _ in range(5)]
            await until(lambda: len(upstream.requests) == 2)
            await asyncio.sleep(0.05)
            held = upstream.connections
            release.set()
            results = await asyncio.gather(*requests)
            await client.aclose()
            return held, upstream.connections, results

    held, connections, results = run(scenario())
    assert (held, connections) == (2, 2)
    assert results == [(200, b"{}")] * 5


def test_a_request_cancelled_while_waiting_for_a_place_leaves_it_to_the_next(run: Run) -> None:
    async def scenario() -> tuple[tuple[int, int], bool, bool]:
        async with raw_upstream(silent_after(b"", pause_s=0)) as upstream:
            client = wire.Client(connections_max=1)
            holder = asyncio.create_task(post(client, upstream.url()))
            await until(lambda: len(upstream.requests) == 1)
            leaver = asyncio.create_task(post(client, upstream.url()))
            waiter = asyncio.create_task(client.request("POST", upstream.url(), headers={}, body=b"{}"))
            await asyncio.sleep(0.02)
            # In this order the place the holder frees is offered to the leaver, already cancelled.
            holder.cancel()
            leaver.cancel()
            await asyncio.wait([holder, leaver])
            await until(lambda: len(upstream.requests) == 2)  # the waiter got the place
            waiter.cancel()
            await asyncio.wait([waiter])
            await client.aclose()
            return (len(upstream.requests), upstream.connections), holder.cancelled(), leaver.cancelled()

    assert run(scenario()) == ((2, 2), True, True)


def test_aclose_closes_every_connection_of_the_loop(run: Run) -> None:
    async def scenario() -> tuple[int, int]:
        async with raw_upstream(keep_answering(answer(b"{}"))) as upstream:
            client = wire.Client()
            await asyncio.gather(post(client, upstream.url()), post(client, upstream.url()))
            await client.aclose()
            await until(lambda: upstream.closed_by_client == upstream.connections)
            return upstream.connections, upstream.closed_by_client

    connections, closed = run(scenario())
    assert connections == closed == 2


# -- cancellation and flow control ---------------------------------------------------------


@pytest.mark.parametrize(
    "sent", [b"", b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"], ids=["before-headers", "mid-body"]
)
def test_a_cancelled_request_closes_its_connection_instead_of_pooling_it(run: Run, sent: bytes) -> None:
    asked = asyncio.Event()

    async def serve(upstream: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        await read_request(upstream, reader)
        writer.write(sent)
        asked.set()
        await read_request(upstream, reader)  # waits for the client to close

    async def scenario() -> tuple[int, int, int]:
        async with raw_upstream(serve) as upstream:
            http = UpstreamHTTP()
            task = asyncio.create_task(http.post_json("p", upstream.url(), headers={}, body={}, timeouts=Timeouts()))
            await asyncio.wait_for(asked.wait(), 2)
            await asyncio.sleep(0.05)  # the client now waits for what was not sent
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            pool, _ = http.client.pool(upstream.url())
            await until(lambda: upstream.closed_by_client == 1)
            return pool.size, len(pool.idle), upstream.closed_by_client

    assert run(scenario()) == (0, 0, 1)


def test_a_stream_its_consumer_abandons_closes_its_connection(run: Run) -> None:
    async def serve(upstream: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        await read_request(upstream, reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + b"a\r\ndata: {}\n\n\r\n")
        await read_request(upstream, reader)

    async def scenario() -> tuple[str, int, int]:
        async with raw_upstream(serve) as upstream:
            http = UpstreamHTTP()
            events = cast(
                AsyncGenerator[Event, None],
                http.post_sse("p", upstream.url(), headers={}, body={}, timeouts=Timeouts()),
            )
            first = await anext(events)
            await events.aclose()
            pool, _ = http.client.pool(upstream.url())
            await until(lambda: upstream.closed_by_client == 1)
            return first.data, pool.size, upstream.closed_by_client

    assert run(scenario()) == ("{}", 0, 1)


def test_a_slow_reader_pauses_the_upstream_instead_of_buffering_it(run: Run) -> None:
    body_bytes = 24 * 1024 * 1024  # more than the kernel's socket buffers can hold on their own
    written = asyncio.Event()

    async def serve(upstream: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        await read_request(upstream, reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % body_bytes)
        piece = b"x" * (1024 * 1024)
        for _ in range(body_bytes // len(piece)):
            writer.write(piece)
            await writer.drain()
        written.set()

    async def scenario() -> tuple[int, bool, int]:
        async with raw_upstream(serve) as upstream:
            client = wire.Client()
            response = await client.request("POST", upstream.url(), headers={}, body=b"{}")
            await asyncio.sleep(0.3)  # the reader is busy elsewhere
            buffered, server_done = response.buffered_bytes, written.is_set()
            total = len(await response.read())
            response.release()
            await client.aclose()
            return buffered, server_done, total

    buffered, server_done, total = run(scenario())
    assert buffered <= wire.BUFFER_HIGH_BYTES + 1024 * 1024
    assert not server_done
    assert total == body_bytes


# -- timeouts, size and encoding through UpstreamHTTP --------------------------------------


@contextmanager
def unanswering_address() -> Iterator[str]:
    """A listening socket whose accept queue is full: a new connection's SYN goes unanswered."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield f"http://127.0.0.1:{port}/x"
    finally:
        for sock in [*fillers, listener]:
            sock.close()


async def failing(http: UpstreamHTTP, url: str, timeouts: Timeouts, *, stream: bool) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        if stream:
            [event async for event in http.post_sse("p", url, headers={}, body={}, timeouts=timeouts)]
        else:
            await http.post_json("p", url, headers={}, body={}, timeouts=timeouts)
    await http.aclose()
    return caught.value


@pytest.mark.parametrize("stream", [False, True])
def test_a_connection_never_accepted_is_a_connect_timeout(stream: bool) -> None:
    with unanswering_address() as url:
        timeouts = Timeouts(connect_ms=200, first_byte_ms=5_000)
        error = asyncio.run(failing(UpstreamHTTP(), url, timeouts, stream=stream))
    assert (error.status, error.error_type, error.timeout) == (504, "timeout", True)
    assert error.message == "the upstream timed out (connect)"


def silent_after(prefix: bytes, *drip: bytes, pause_s: float) -> Serve:
    async def serve(upstream: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        await read_request(upstream, reader)
        writer.write(prefix)
        for piece in drip:
            await asyncio.sleep(pause_s)
            if reader.at_eof():
                return  # the client gave up
            writer.write(piece)
        await read_request(upstream, reader)  # silent until the client closes

    return serve


CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
EVENT = chunked(b"data: {}\n\n")[: -len(b"0\r\n\r\n")]


@pytest.mark.parametrize(
    ("serve", "timeouts", "limit"),
    [
        (silent_after(b"", pause_s=0), Timeouts(first_byte_ms=150), "first byte"),
        (silent_after(CHUNKED_HEAD + EVENT, pause_s=0), Timeouts(chunk_gap_ms=150), "chunk gap"),
        (silent_after(CHUNKED_HEAD, *[EVENT] * 40, pause_s=0.03), Timeouts(total_ms=300), "the whole request"),
    ],
    ids=["first-byte", "chunk-gap", "total"],
)
@pytest.mark.parametrize("stream", [False, True])
def test_each_timeout_names_its_limit(run: Run, serve: Serve, timeouts: Timeouts, limit: str, stream: bool) -> None:
    async def scenario() -> ProviderError:
        async with raw_upstream(serve) as upstream:
            return await failing(UpstreamHTTP(), upstream.url(), timeouts, stream=stream)

    error = run(scenario())
    assert (error.status, error.error_type) == (504, "timeout")
    assert error.message == f"the upstream timed out ({limit})"


@pytest.mark.parametrize(
    ("body", "encoding"),
    [(b"x" * 5_000, None), (gzip.compress(b"0" * 10_000_000), "gzip")],
    ids=["plain", "gzip-bomb"],
)
@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_over_the_size_cap_is_a_502(run: Run, body: bytes, encoding: str | None, stream: bool) -> None:
    headers = [f"content-encoding: {encoding}"] if encoding else []

    async def scenario() -> ProviderError:
        async with raw_upstream(keep_answering(answer(body, *headers))) as upstream:
            return await failing(
                UpstreamHTTP(max_response_bytes=100_000 if encoding else 1_000),
                upstream.url(),
                Timeouts(),
                stream=stream,
            )

    error = run(scenario())
    assert error.status == 502
    assert error.message == f"the upstream {'stream' if stream else 'response'} is larger than the gateway accepts"


def deflate_raw(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("deflate", zlib.compress), ("deflate", deflate_raw)],
    ids=["gzip", "deflate", "raw-deflate"],
)
def test_a_compressed_answer_is_decompressed(run: Run, encoding: str, compress: Callable[[bytes], bytes]) -> None:
    reply = answer(compress(b'{"a": 1}'), f"content-encoding: {encoding}")

    async def scenario() -> Any:
        async with raw_upstream(keep_answering(reply)) as upstream:
            http = UpstreamHTTP()
            payload, _ = await http.post_json("p", upstream.url(), headers={}, body={}, timeouts=Timeouts())
            await http.aclose()
            return payload

    assert run(scenario()) == {"a": 1}


def test_a_gzip_stream_is_decompressed_as_it_arrives(run: Run) -> None:
    compressor = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    first = compressor.compress(b'data: {"a": 1}\n\n') + compressor.flush(zlib.Z_SYNC_FLUSH)
    second = compressor.compress(b'data: {"b": 2}\n\ndata: [DONE]\n\n') + compressor.flush()
    head = b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n"

    async def scenario() -> list[str]:
        async with raw_upstream(silent_after(head + chunked(first)[:-5], chunked(second), pause_s=0.05)) as upstream:
            http = UpstreamHTTP()
            url = upstream.url()
            events = [event.data async for event in http.post_sse("p", url, headers={}, body={}, timeouts=Timeouts())]
            await http.aclose()
            return events

    assert run(scenario()) == ['{"a": 1}', '{"b": 2}', "[DONE]"]


def test_a_redirect_is_an_answer_not_followed(run: Run) -> None:
    reply = answer(b"", "location: http://127.0.0.1:1/elsewhere", status="302 Found")

    async def scenario() -> tuple[int, int]:
        async with raw_upstream(keep_answering(reply)) as upstream:
            http = UpstreamHTTP()
            with pytest.raises(UpstreamHTTPError) as caught:
                await http.post_json("p", upstream.url(), headers={}, body={}, timeouts=Timeouts())
            await http.aclose()
            return caught.value.status, len(upstream.requests)

    assert run(scenario()) == (302, 1)


# -- TLS -----------------------------------------------------------------------------------


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for ``localhost`` signed by its own key: (certificate, key) PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certificate_path, key_path = directory / "upstream.pem", directory / "upstream.key"
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return certificate_path, key_path


@pytest.fixture
def tls_upstream(tmp_path: Path) -> tuple[ssl.SSLContext, Path, list[str | None]]:
    """The server's TLS context, the certificate to trust, and the server names clients asked for."""
    certificate, key = self_signed_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)
    names: list[str | None] = []

    def sni(connection: Any, name: str | None, context: ssl.SSLContext) -> None:
        names.append(name)

    context.sni_callback = sni
    return context, certificate, names


def test_tls_with_an_untrusted_certificate_fails_verification(
    run: Run, tls_upstream: tuple[ssl.SSLContext, Path, list[str | None]]
) -> None:
    server_context, _, _ = tls_upstream

    async def scenario() -> ProviderError:
        async with raw_upstream(keep_answering(answer(b"{}")), tls=server_context) as upstream:
            return await failing(UpstreamHTTP(), upstream.url(host="localhost"), Timeouts(), stream=False)

    error = run(scenario())
    assert (error.status, error.error_type) == (502, "network_error")
    assert error.message == "network error talking to the upstream: TLSError"


def test_tls_with_a_trusted_certificate_sends_sni_and_reuses_its_connection(
    run: Run, tls_upstream: tuple[ssl.SSLContext, Path, list[str | None]]
) -> None:
    server_context, certificate, names = tls_upstream
    trusting = ssl.create_default_context(cafile=str(certificate))

    async def scenario() -> tuple[list[Any], int]:
        async with raw_upstream(keep_answering(answer(b'{"ok": true}')), tls=server_context) as upstream:
            http = UpstreamHTTP(ssl_context=trusting)
            url = upstream.url(host="localhost")
            payloads = [(await http.post_json("p", url, headers={}, body={}, timeouts=Timeouts()))[0] for _ in "ab"]
            await http.aclose()
            return payloads, upstream.connections

    payloads, connections = run(scenario())
    assert payloads == [{"ok": True}, {"ok": True}]
    assert connections == 1
    assert names == ["localhost"]
