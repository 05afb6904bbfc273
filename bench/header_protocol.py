"""What glasskey's header bounds (``serving_protocol``) add to parsing one request, in µs.

    python -m bench.header_protocol

Feeds a typical chat request (line, 9 headers, a 120-byte body) to uvicorn's httptools protocol and
to glasskey's subclass, on one event loop with a transport that discards what is written, and
reports the median time per request of several interleaved rounds for each, on uvloop (as
``glasskey serve`` runs). Only the parsing and the
dispatch to an ASGI task differ; the app never runs (each task is cancelled), so the figure is
the protocol's own cost, far below the noise of a whole request through the gateway (bench.cost).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from glasskey.serving_protocol import bounded_protocol

BODY = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16, "x": "y"}'
REQUEST = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nAccept-Encoding: gzip, deflate\r\n"
    b"Connection: keep-alive\r\nAccept: application/json\r\nContent-Type: application/json\r\n"
    b"User-Agent: OpenAI/Python 1.50.0\r\nX-Stainless-Lang: python\r\n"
    b"Authorization: Bearer gk-0123456789abcdef-0123456789abcdef0123456789abcdef\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
)
REQUESTS = 20_000
ROUNDS = 9


class Discard(asyncio.Transport):
    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def app(scope: Any, receive: Any, send: Any) -> None:
    pass


async def per_request_us(factory: Any) -> float:
    config = Config(app, lifespan="off", log_level="warning")
    config.load()
    state = ServerState()
    protocol = factory(config=config, server_state=state, app_state={})
    protocol.connection_made(Discard())
    began = time.perf_counter()
    for n in range(REQUESTS):
        if n % 100 == 0:
            await asyncio.sleep(0)  # let the loop run the cancellations, as a server's loop would
        protocol.data_received(REQUEST)
        protocol.cycle.response_complete = True  # as if the app had answered: the next is not pipelined
        protocol.on_response_complete()
        for task in state.tasks:
            task.cancel()
        state.tasks.clear()
    elapsed = time.perf_counter() - began
    protocol.connection_lost(None)
    await asyncio.sleep(0)
    return elapsed / REQUESTS * 1e6


async def main() -> None:
    factories = {"uvicorn httptools": HttpToolsProtocol, "glasskey bounded": bounded_protocol(10.0, 64 * 1024, 256)}
    results: dict[str, list[float]] = {name: [] for name in factories}
    for _ in range(ROUNDS):  # interleaved, so a busy moment of the machine hits both
        for name, factory in factories.items():
            results[name].append(await per_request_us(factory))
    for name, figures in results.items():
        print(f"{name:20} median {statistics.median(figures):6.2f} µs/request  (min {min(figures):.2f})")
    plain, bounded = (statistics.median(figures) for figures in results.values())
    print(f"{'difference':20} {bounded - plain:+.2f} µs/request")


if __name__ == "__main__":
    import uvloop  # glasskey serve's loop (its timers are the ones the bounded protocol arms)

    uvloop.run(main())
