"""A fake OpenAI-compatible upstream with a fixed added latency and as little overhead as Python allows.

It is a hand-written ``asyncio.Protocol`` HTTP/1.1 keep-alive server (httptools parses the
requests, uvloop runs the loop when installed), so that what the benchmark measures in front of it
is the proxy, not the upstream. It answers ``POST /v1/chat/completions``:

- non-streaming: one fixed small completion with ``usage``;
- streaming (``"stream": true``): 25 content chunks, a finish chunk, a usage chunk when
  ``stream_options.include_usage`` is set, then ``data: [DONE]``; every event is written as its
  own HTTP chunk, so a proxy sees a stream of events, not one blob.

The latency (``--latency-ms``) is added before the first byte of every answer. Every answer is
prebuilt once per (model, stream, usage) and reused.

    python -m bench.upstream --port 9001 --latency-ms 50
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any, cast

import httptools
import orjson

CREATED = 1_700_000_000
COMPLETION_ID = "chatcmpl-bench"
TEXT = (
    "The quick brown fox jumps over the lazy dog while the gateway counts every token it "
    "relays and writes a receipt for each request that it serves to the client in time."
)
WORDS = TEXT.split()
STREAM_CHUNKS = 25
PROMPT_TOKENS = 12
COMPLETION_TOKENS = STREAM_CHUNKS
NOT_FOUND = orjson.dumps({"error": {"message": "not found", "type": "invalid_request_error", "code": "not_found"}})
BAD_REQUEST = orjson.dumps({"error": {"message": "bad JSON body", "type": "invalid_request_error", "code": None}})


def _usage() -> dict[str, int]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
    }


def _head(status: str, content_type: str, length: int | None) -> bytes:
    framing = f"content-length: {length}" if length is not None else "transfer-encoding: chunked"
    return f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\n{framing}\r\n\r\n".encode()


def json_answer(status: str, body: bytes) -> bytes:
    return _head(status, "application/json", len(body)) + body


def completion(model: str) -> bytes:
    """The whole HTTP answer of a non-streaming chat completion."""
    body = {
        "id": COMPLETION_ID,
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": " ".join(WORDS[:COMPLETION_TOKENS]), "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(),
        "system_fingerprint": None,
    }
    return json_answer("200 OK", orjson.dumps(body))


def _chunk(model: str, delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
    return {
        "id": COMPLETION_ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def stream_events(model: str, include_usage: bool) -> list[bytes]:
    """The HTTP answer of a stream as separate writes: the head, one HTTP chunk per event, the end."""
    events: list[dict[str, Any]] = []
    for index in range(STREAM_CHUNKS):
        delta: dict[str, Any] = {"content": ("" if index == 0 else " ") + WORDS[index % len(WORDS)]}
        if index == 0:
            delta["role"] = "assistant"
        events.append(_chunk(model, delta, None))
    events.append(_chunk(model, {}, "stop"))
    if include_usage:
        events.append({**_chunk(model, {}, None), "choices": [], "usage": _usage()})
    payloads = [b"data: " + orjson.dumps(event) + b"\n\n" for event in events] + [b"data: [DONE]\n\n"]
    writes = [_head("200 OK", "text/event-stream", None)]
    writes += [b"%x\r\n%b\r\n" % (len(payload), payload) for payload in payloads]
    writes.append(b"0\r\n\r\n")
    return writes


class Answers:
    """Prebuilt answers, keyed by what the request asked for."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, bool, bool], list[bytes]] = {}

    def for_body(self, body: bytes) -> list[bytes]:
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            return [json_answer("400 Bad Request", BAD_REQUEST)]
        if not isinstance(request, dict):
            return [json_answer("400 Bad Request", BAD_REQUEST)]
        model = str(request.get("model", "bench"))
        stream = request.get("stream") is True
        options = request.get("stream_options")
        include_usage = stream and isinstance(options, dict) and options.get("include_usage") is True
        key = (model, stream, include_usage)
        answer = self._cache.get(key)
        if answer is None:
            answer = stream_events(model, include_usage) if stream else [completion(model)]
            if len(self._cache) < 64:  # bounded: a client cycling model names cannot grow it forever
                self._cache[key] = answer
        return answer


class UpstreamProtocol(asyncio.Protocol):
    """One client connection: parse requests as they arrive, answer each after the latency."""

    def __init__(self, answers: Answers, latency_s: float, chunk_gap_s: float) -> None:
        self.answers = answers
        self.latency_s = latency_s
        self.chunk_gap_s = chunk_gap_s
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(json_answer("400 Bad Request", BAD_REQUEST))
                self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        path = self.url.split(b"?", 1)[0]
        if method == b"POST" and path in (b"/v1/chat/completions", b"/chat/completions"):
            writes = self.answers.for_body(b"".join(self.body))
        elif method == b"GET" and path in (b"/health", b"/v1/health"):
            writes = [json_answer("200 OK", b'{"status":"ok"}')]
        else:
            writes = [json_answer("404 Not Found", NOT_FOUND)]
        keep_alive = self.parser.should_keep_alive()
        if self.latency_s > 0:
            asyncio.get_running_loop().call_later(self.latency_s, self._send, writes, keep_alive)
        else:
            self._send(writes, keep_alive)

    def _send(self, writes: list[bytes], keep_alive: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.chunk_gap_s > 0 and len(writes) > 1:
            transport.write(writes[0])
            asyncio.get_running_loop().call_later(self.chunk_gap_s, self._send, writes[1:], keep_alive)
            return
        for part in writes:
            transport.write(part)
        if not keep_alive:
            transport.close()


async def serve(host: str, port: int, latency_ms: float, chunk_gap_ms: float) -> None:
    loop = asyncio.get_running_loop()
    answers = Answers()
    server = await loop.create_server(
        lambda: UpstreamProtocol(answers, latency_ms / 1000, chunk_gap_ms / 1000), host, port, backlog=1024
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def run(host: str, port: int, latency_ms: float, chunk_gap_ms: float = 0.0) -> None:
    try:
        import uvloop
    except ImportError:  # the plain asyncio loop still works, only slower
        asyncio.run(serve(host, port, latency_ms, chunk_gap_ms))
    else:
        uvloop.run(serve(host, port, latency_ms, chunk_gap_ms))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added before the first byte of every answer")
    parser.add_argument("--chunk-gap-ms", type=float, default=0.0, help="pause between stream events (default none)")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the fake upstream listens on loopback only")
    run(args.host, args.port, args.latency_ms, args.chunk_gap_ms)


if __name__ == "__main__":
    main()
