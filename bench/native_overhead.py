"""What ``POST /v1/messages`` and Gemini's ``generateContent`` cost next to ``POST /v1/chat/completions``.

    python -m bench.native_overhead                  # 300 requests per endpoint, SQLite
    python -m bench.native_overhead --requests 2000

Both endpoints are called through the ASGI app ``build_app`` returns, in this process (httpx's
``ASGITransport``: no socket, no server), one request at a time, with the same key, model and
``simulated`` route (no upstream latency), JSON and streamed. So the difference between two rows is
the Anthropic (or Gemini) endpoint's own cost: the Starlette routing that ``/v1/chat/completions``
skips (it is served by the lean front door of ``gateway/asgi.py``), and the translation both ways.
The pure translations are also timed alone. Figures are wall time (median) and this process's CPU time per
request; the machine is shared, so compare rows of one run, not runs.

Two more rows serve ``claude-sonnet-4-5`` by an ``anthropic`` route whose upstream is a minimal
Anthropic Messages API on a loopback socket (a fixed answer, in a thread of this process): through
``/v1/chat/completions`` (translated to Anthropic and back) and through ``/v1/messages`` (the
caller's body passed through, Anthropic's answer relayed as it is).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from bench.seed import seed_gateway
from glasskey.app import build_app
from glasskey.gateway.anthropic_inbound import to_chat_body
from glasskey.gateway.anthropic_inbound_reply import to_message
from glasskey.gateway.anthropic_inbound_stream import MessageStream
from glasskey.gateway.gemini_answers import StreamAnswer, generate_response
from glasskey.gateway.gemini_inbound import chat_body
from glasskey.gateway.outcomes import SSE_DONE, sse
from glasskey.routing.routes import list_routes, update_route
from glasskey.services import Services, build_services

MODEL = "gpt-4o-mini"
CLAUDE = "claude-sonnet-4-5"
PROMPT = [{"role": "user", "content": "Say hello in one short sentence, please."}]
GEMINI_BODY = {
    "contents": [{"role": "user", "parts": [{"text": PROMPT[0]["content"]}]}],
    "generationConfig": {"maxOutputTokens": 64},
}
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "chat.completions": ("/v1/chat/completions", {"model": MODEL, "messages": PROMPT, "max_tokens": 64}),
    "messages": ("/v1/messages", {"model": MODEL, "messages": PROMPT, "max_tokens": 64}),
    "chat.completions stream": (
        "/v1/chat/completions",
        {
            "model": MODEL,
            "messages": PROMPT,
            "max_tokens": 64,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    ),
    "messages stream": ("/v1/messages", {"model": MODEL, "messages": PROMPT, "max_tokens": 64, "stream": True}),
    "generateContent": (f"/v1beta/models/{MODEL}:generateContent", GEMINI_BODY),
    "generateContent stream": (f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse", GEMINI_BODY),
    "claude chat.completions": ("/v1/chat/completions", {"model": CLAUDE, "messages": PROMPT, "max_tokens": 64}),
    "claude messages (pass)": ("/v1/messages", {"model": CLAUDE, "messages": PROMPT, "max_tokens": 64}),
    "claude messages stream": ("/v1/messages", {"model": CLAUDE, "messages": PROMPT, "max_tokens": 64, "stream": True}),
}
ANSWER = {
    "id": "msg_bench",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [{"type": "text", "text": "Hello there, in one short sentence."}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 12, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 9},
}
STREAM = b"".join(
    b"event: " + name.encode() + b"\ndata: " + data.encode() + b"\n\n"
    for name, data in [
        ("message_start", '{"type":"message_start","message":{"id":"msg_bench","type":"message","role":"assistant",'
         '"model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,'
         '"usage":{"input_tokens":12,"output_tokens":1}}}'),
        ("content_block_start", '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}'),
        *[("content_block_delta", '{"type":"content_block_delta","index":0,'
           '"delta":{"type":"text_delta","text":" word"}}')] * 12,
        ("content_block_stop", '{"type":"content_block_stop","index":0}'),
        ("message_delta", '{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
         '"usage":{"output_tokens":12}}'),
        ("message_stop", '{"type":"message_stop"}'),
    ]
)  # fmt: skip


async def _anthropic_messages(request: Request) -> Response:
    body = await request.json()
    if body.get("stream"):

        async def events() -> Any:
            yield STREAM

        return StreamingResponse(events(), media_type="text/event-stream")
    return JSONResponse(ANSWER)


class AnthropicUpstream:
    """A minimal Anthropic Messages API on a loopback port, in a thread: a fixed answer, JSON or streamed."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        app = Starlette(routes=[Route("/v1/messages", _anthropic_messages, methods=["POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def seeded_services(data_dir: Path, anthropic_url: str) -> tuple[Services, str]:
    """``bench.seed``'s gateway (SQLite, a funded org, a key), its ``MODEL`` route turned ``simulated``
    and its ``CLAUDE`` route ``anthropic``, at ``anthropic_url``."""
    urls = {MODEL: "http://127.0.0.1:9/v1", CLAUDE: anthropic_url}
    seed = seed_gateway(f"sqlite:///{data_dir / 'glasskey.db'}", data_dir, urls, 1)
    services = build_services(seed.settings())
    with services.db.write() as conn:
        (route,) = list_routes(conn, MODEL)
        update_route(conn, route.id, provider="simulated", base_url="", credential=None)
        (claude,) = list_routes(conn, CLAUDE)
        update_route(conn, claude.id, provider="anthropic", upstream_model="claude-sonnet-4-5-20250929")
    return services, seed.keys[0]


async def measure(services: Services, key: str, requests: int) -> dict[str, tuple[float, float]]:
    """Per case: (median wall milliseconds, CPU microseconds) per request.

    The cases take turns, one request each, so a drift of the machine or of the database over the
    run weighs on every case alike.
    """
    transport = httpx.ASGITransport(app=build_app(services))
    headers = {"authorization": f"Bearer {key}", "anthropic-version": "2023-06-01"}
    walls: dict[str, list[float]] = {name: [] for name in CASES}
    cpus: dict[str, float] = dict.fromkeys(CASES, 0.0)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        for round_number in range(20 + requests):  # 20 rounds warm caches and pages before counting
            for name, (path, body) in CASES.items():
                cpu, began = time.process_time(), time.perf_counter()
                response = await client.post(path, json=body, headers=headers)
                wall, cpu = time.perf_counter() - began, time.process_time() - cpu
                response.raise_for_status()
                if round_number >= 20:
                    walls[name].append(wall)
                    cpus[name] += cpu
    return {name: (statistics.median(walls[name]) * 1000, cpus[name] / requests * 1e6) for name in CASES}


def translation_cost_us(repeats: int) -> float:
    """The pure translation of one streamed request both ways (body, 12 chunks, usage, done), in microseconds."""
    body = {"model": MODEL, "messages": PROMPT, "max_tokens": 64, "stream": True}
    chunk = {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": " word"}}]}
    lines = [sse(chunk)] * 12 + [
        sse({"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 12}}),
        SSE_DONE,
    ]
    completion = {"choices": [{"message": {"content": "Hello."}, "finish_reason": "stop"}], "usage": {}}
    began = time.perf_counter()
    for _ in range(repeats):
        to_chat_body(body)
        stream = MessageStream("msg_bench", MODEL)
        for line in lines:
            stream.feed(line)
        to_message(completion, message_id="msg_bench", model=MODEL)
    return (time.perf_counter() - began) / repeats * 1e6


def gemini_translation_cost_us(repeats: int) -> float:
    """The same for the Gemini API: the request, 12 chunks, usage, done, and a whole answer."""
    chunk = {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": " word"}}]}
    finish = {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    usage = {"id": "c", "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 12, "total_tokens": 24}}
    lines = [sse(chunk)] * 12 + [sse(finish), sse(usage), SSE_DONE]
    completion = {"id": "c", "choices": [{"index": 0, "message": {"content": "Hello."}, "finish_reason": "stop"}]}
    began = time.perf_counter()
    for _ in range(repeats):
        chat_body(MODEL, GEMINI_BODY, stream=True)
        answer = StreamAnswer()
        for line in lines:
            answer.feed(line)
        generate_response(completion)
    return (time.perf_counter() - began) / repeats * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="glasskey-native-"))
    try:
        with AnthropicUpstream() as anthropic_url:
            services, key = seeded_services(data_dir, anthropic_url)
            try:
                results = asyncio.run(measure(services, key, args.requests))
            finally:
                services.close()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    for name, (wall_ms, cpu_us) in results.items():
        print(f"{name:<24} {wall_ms:6.2f} ms median  CPU {cpu_us:6.0f} us/request")
    print(f"{'translation alone':<24} {translation_cost_us(2000):6.1f} us/request (stream both ways)")
    print(f"{'gemini translation alone':<24} {gemini_translation_cost_us(2000):6.1f} us/request (stream both ways)")


if __name__ == "__main__":
    main()
