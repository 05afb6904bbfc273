"""A closed-loop load generator: ``concurrency`` clients, each sending its next request when the last ends.

Two clients share one measuring loop:

- ``raw`` (the default): one keep-alive HTTP/1.1 connection per client, hand-written on
  ``asyncio.Protocol`` with httptools parsing the answers, under uvloop. Its clock stops in the
  parser callback, so a busy client loop does not add its own scheduling delay to the latency.
- ``httpx``: ``httpx.AsyncClient`` with a pool as large as the concurrency. It is kept to show why
  it is not the default: against the bare upstream it tops out several times lower than ``raw``
  (the harness measures both and says so in the report), so it would measure itself.

A run is bounded twice: by the number of measured requests and by its duration; a warm-up phase
(connections opened, caches filled) comes first and is not counted. Each request is timed from
its first byte written to its last byte read; for streams the time to the first body byte is
recorded too. An answer is an error when it is not a 200, when a stream does not end with
``data: [DONE]`` or carries an in-band error, or when the connection fails or times out.

    python -m bench.load --url http://127.0.0.1:9001/v1/chat/completions --concurrency 16 --stream
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

import httptools
import orjson

PROMPT = "Say hello to the benchmark in twenty-five words."
MAX_TOKENS = 64
TIMEOUT_S = 30.0


@dataclass(frozen=True)
class LoadSpec:
    url: str  # http://127.0.0.1:PORT/v1/chat/completions
    model: str
    concurrency: int
    stream: bool = False
    keys: tuple[str, ...] = ()  # bearer keys, used in turn; none sends no Authorization header
    requests_max: int = 2000  # measured requests, warm-up excluded
    duration_s_max: float = 5.0  # the measured phase stops issuing requests after this
    warmup_requests: int | None = None  # default: 2 per client, at least 10; 0 skips the warm-up
    warmup_s_max: float = 1.0
    client: str = "raw"  # raw | httpx
    timeout_s: float = TIMEOUT_S
    # Sent with every request: Portkey's gateway learns its upstream from headers (x-portkey-*).
    extra_headers: tuple[tuple[str, str], ...] = ()


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    served_ok: int = 0  # successful answers, warm-up included (what the server must have receipts for)
    throughput_rps: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)  # p50 p95 p99 max mean
    ttfb_ms: dict[str, float] = field(default_factory=dict)  # streams only

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of values already sorted."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarize(values_s: list[float]) -> dict[str, float]:
    values = sorted(v * 1000 for v in values_s)
    if not values:
        return {}
    return {
        "p50": percentile(values, 0.50),
        "p95": percentile(values, 0.95),
        "p99": percentile(values, 0.99),
        "max": values[-1],
        "mean": sum(values) / len(values),
    }


def request_body(model: str, stream: bool) -> bytes:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": MAX_TOKENS}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return orjson.dumps(body)


def _headers(host: str, key: str | None, length: int, extra: tuple[tuple[str, str], ...] = ()) -> dict[str, str]:
    headers = {"host": host, "content-type": "application/json", "content-length": str(length), **dict(extra)}
    if key:
        headers["authorization"] = f"Bearer {key}"
    return headers


@dataclass
class Outcome:
    """One request: ``error`` is None on success."""

    started: float
    ended: float
    first_byte: float | None
    error: str | None


def _judge(status: int, body: bytes, stream: bool) -> str | None:
    if status != 200:
        return f"status {status}"
    if stream:
        if b'data: {"error"' in body:
            return "stream error event"
        if not body.rstrip().endswith(b"data: [DONE]"):
            return "stream without [DONE]"
    return None


# -- the raw client ------------------------------------------------------------------------


class RawConnection(asyncio.Protocol):
    """One keep-alive connection that carries one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[None] | None = None
        self.body: list[bytes] = []
        self.first_byte: float | None = None
        self.ended = 0.0
        self.closed = False
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the server closed the connection"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_exception(ConnectionError(f"unparsable answer: {exc}"))
            if self.transport is not None:
                self.transport.close()

    def on_body(self, body: bytes) -> None:
        if self.first_byte is None:
            self.first_byte = time.perf_counter()
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.ended = time.perf_counter()
        # Asked here: once the message is complete the parser resets, and then always says no.
        self.keep_alive = self.parser.should_keep_alive()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def send(self, payload: bytes, stream: bool, timeout_s: float) -> Outcome:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self.waiter = waiter = loop.create_future()
        self.body = []
        self.first_byte = None
        started = time.perf_counter()
        self.transport.write(payload)
        timer = loop.call_later(timeout_s, _expire, waiter)
        try:
            await waiter
        except (ConnectionError, TimeoutError) as exc:
            if self.transport is not None:
                self.transport.close()
            self.closed = True
            kind = "timeout" if isinstance(exc, TimeoutError) else "connection"
            return Outcome(started, time.perf_counter(), self.first_byte, kind)
        finally:
            timer.cancel()
        if not self.keep_alive:
            self.transport.close()
            self.closed = True
        error = _judge(self.parser.get_status_code(), b"".join(self.body), stream)
        return Outcome(started, self.ended, self.first_byte, error)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("no complete answer in time"))


def raw_payloads(spec: LoadSpec) -> list[bytes]:
    parts = urlsplit(spec.url)
    body = request_body(spec.model, spec.stream)
    payloads = []
    for key in spec.keys or (None,):
        headers = _headers(parts.netloc, key, len(body), spec.extra_headers)
        head = f"POST {parts.path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        payloads.append(head.encode() + body)
    return payloads


class RawClient:
    def __init__(self, spec: LoadSpec) -> None:
        parts = urlsplit(spec.url)
        if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the load generator targets loopback only")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.spec = spec
        self.payloads = raw_payloads(spec)
        self.connections: list[RawConnection] = []

    async def worker(self) -> Callable[[int], Awaitable[Outcome]]:
        state: dict[str, RawConnection] = {}

        async def one(index: int) -> Outcome:
            connection = state.get("c")
            if connection is None or connection.closed:
                loop = asyncio.get_running_loop()
                try:
                    _, protocol = await asyncio.wait_for(
                        loop.create_connection(RawConnection, self.host, self.port), self.spec.timeout_s
                    )
                except (OSError, TimeoutError):
                    now = time.perf_counter()
                    await asyncio.sleep(0.01)  # a refused connection must not spin the loop
                    return Outcome(now, now, None, "connect")
                connection = state["c"] = protocol
                self.connections.append(protocol)
            payload = self.payloads[index % len(self.payloads)]
            return await connection.send(payload, self.spec.stream, self.spec.timeout_s)

        return one

    async def aclose(self) -> None:
        for connection in self.connections:
            if connection.transport is not None and not connection.closed:
                connection.transport.close()
        self.connections.clear()


# -- the httpx client ----------------------------------------------------------------------


class HttpxClient:
    def __init__(self, spec: LoadSpec) -> None:
        import httpx

        self.spec = spec
        self.body = request_body(spec.model, spec.stream)
        self.headers = [
            {
                k: v
                for k, v in _headers(urlsplit(spec.url).netloc, key, len(self.body), spec.extra_headers).items()
                if k != "host"
            }
            for key in spec.keys or (None,)
        ]
        limits = httpx.Limits(max_connections=spec.concurrency, max_keepalive_connections=spec.concurrency)
        self.client = httpx.AsyncClient(limits=limits, timeout=spec.timeout_s, trust_env=False)

    async def worker(self) -> Callable[[int], Awaitable[Outcome]]:
        import httpx

        async def one(index: int) -> Outcome:
            started = time.perf_counter()
            first_byte: float | None = None
            chunks: list[bytes] = []
            try:
                headers = self.headers[index % len(self.headers)]
                async with self.client.stream("POST", self.spec.url, content=self.body, headers=headers) as answer:
                    async for chunk in answer.aiter_raw():
                        if first_byte is None:
                            first_byte = time.perf_counter()
                        chunks.append(chunk)
                    status = answer.status_code
            except httpx.TimeoutException:
                return Outcome(started, time.perf_counter(), first_byte, "timeout")
            except httpx.HTTPError:
                return Outcome(started, time.perf_counter(), first_byte, "connection")
            return Outcome(started, time.perf_counter(), first_byte, _judge(status, b"".join(chunks), self.spec.stream))

        return one

    async def aclose(self) -> None:
        await self.client.aclose()


# -- the closed loop -----------------------------------------------------------------------


async def _phase(
    workers: list[Callable[[int], Awaitable[Outcome]]], count: int, duration_s: float
) -> tuple[list[Outcome], float, float]:
    """Run ``count`` requests over the workers (or until ``duration_s``); outcomes and the span."""
    outcomes: list[Outcome] = []
    issued = 0
    start = time.perf_counter()
    deadline = start + duration_s

    async def loop_of(worker: Callable[[int], Awaitable[Outcome]]) -> None:
        nonlocal issued
        while issued < count and time.perf_counter() < deadline:
            index = issued
            issued += 1
            outcomes.append(await worker(index))

    await asyncio.gather(*(loop_of(worker) for worker in workers))
    end = max((o.ended for o in outcomes), default=time.perf_counter())
    return outcomes, start, end


async def run_load(spec: LoadSpec) -> LoadResult:
    if spec.concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    client: RawClient | HttpxClient = RawClient(spec) if spec.client == "raw" else HttpxClient(spec)
    try:
        workers = [await client.worker() for _ in range(spec.concurrency)]
        warmup = max(10, 2 * spec.concurrency) if spec.warmup_requests is None else spec.warmup_requests
        warm: list[Outcome] = []
        if warmup > 0:
            warm, _, _ = await _phase(workers, warmup, spec.warmup_s_max)
        outcomes, start, end = await _phase(workers, spec.requests_max, spec.duration_s_max)
    finally:
        await client.aclose()
    ok = [o for o in outcomes if o.error is None]
    kinds = Counter(o.error for o in outcomes if o.error is not None)
    elapsed = max(end - start, 1e-9)
    result = LoadResult(
        requests=len(outcomes),
        errors=len(outcomes) - len(ok),
        error_kinds=dict(kinds),
        elapsed_s=elapsed,
        served_ok=len(ok) + sum(1 for o in warm if o.error is None),
        throughput_rps=len(ok) / elapsed,
        latency_ms=summarize([o.ended - o.started for o in ok]),
    )
    if spec.stream:
        result.ttfb_ms = summarize([o.first_byte - o.started for o in ok if o.first_byte is not None])
    return result


def run_load_sync(spec: LoadSpec) -> LoadResult:
    """Run one load on a fresh event loop (uvloop when installed)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(run_load(spec))
    return uvloop.run(run_load(spec))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", default="gpt-4o-mini")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--key", action="append", default=[], help="bearer key; repeat to use several in turn")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw")
    args = parser.parse_args(argv)
    spec = LoadSpec(
        url=args.url,
        model=args.model,
        concurrency=args.concurrency,
        stream=args.stream,
        keys=tuple(args.key),
        requests_max=args.requests,
        duration_s_max=args.duration,
        client=args.client,
    )
    sys.stdout.write(orjson.dumps(run_load_sync(spec).as_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")


if __name__ == "__main__":
    main()
