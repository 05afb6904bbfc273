"""A bare pass-through proxy on glasskey's own server stack: the floor of what Python can do here.

Starlette on uvicorn (uvloop and httptools, one worker) with one pooled upstream client: aiohttp
set up as glasskey runs it (``glasskey.providers.upstream_client``; ``--client aiohttp`` for aiohttp
as it comes, ``httpx`` or ``httpx2`` to compare clients). No auth and no accounting: it reads the body,
parses it once (to learn the model, which picks the upstream, and whether a stream is asked for),
forwards the body unchanged and streams the answer back as it arrives. Whatever glasskey costs
above this is the price of its checks, its ledger and its receipts.

    python -m bench.bare_proxy --port 9100 --route gpt-4o-mini=http://127.0.0.1:9001/v1
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

FORWARDED_HEADERS = {"content-type": "application/json"}
CLIENTS = ("glasskey", "aiohttp", "httpx", "httpx2")


def upstream_of(body: bytes, routes: dict[str, str]) -> tuple[dict[str, Any], str | None]:
    """The parsed body and the upstream base URL its model routes to (None: refuse it)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}, None
    if not isinstance(parsed, dict):
        return {}, None
    return parsed, routes.get(str(parsed.get("model")))


REFUSED = Response(b'{"error":{"message":"bad JSON or unknown model"}}', 400, media_type="application/json")


class Answer(Protocol):
    """What an aiohttp answer offers the proxy: a status, the whole body, and a release."""

    status: int

    async def read(self) -> bytes: ...

    def release(self) -> Any: ...


async def whole_answer(answer: Answer, content_type: str) -> Response:
    """A non-streaming answer, read whole; its connection goes back to the pool."""
    try:
        content = await answer.read()
    finally:
        answer.release()
    return Response(content, answer.status, media_type=content_type)


def proxy_app(
    chat_completions: Callable[[Request], Awaitable[Response]], close: Callable[[], Awaitable[None]]
) -> Starlette:
    """The proxy's one route, and its upstream client closed when the server stops."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await close()

    return Starlette(routes=[Route("/v1/chat/completions", chat_completions, methods=["POST"])], lifespan=lifespan)


def build_glasskey_app(routes: dict[str, str]) -> Starlette:
    """The proxy on glasskey's upstream client as glasskey sets it up (``providers.upstream_client``:
    aiohttp with capped headers, happy eyeballs, no cookies, no proxy), used directly: the body goes
    out as it came, the answer's bytes come back as they arrive (no JSON re-encoded, no SSE parsed)."""
    from multidict import CIMultiDict

    from glasskey.providers.upstream_client import Sessions

    sessions = Sessions(ssl_context=None, proxy=None)
    headers = CIMultiDict(FORWARDED_HEADERS)

    async def chat_completions(request: Request) -> Response:
        body = await request.body()
        parsed, base_url = upstream_of(body, routes)
        if base_url is None:
            return REFUSED
        answer = await sessions.post(base_url + "/chat/completions", headers, body, 5_000)
        content_type = answer.headers.get("content-type", "application/json")
        if parsed.get("stream") is True:
            return StreamingResponse(
                answer.content.iter_any(),
                answer.status,
                media_type=content_type,
                background=BackgroundTask(answer.release),
            )
        return await whole_answer(answer, content_type)

    return proxy_app(chat_completions, sessions.aclose)


def build_aiohttp_app(routes: dict[str, str]) -> Starlette:
    """The proxy on aiohttp's client as it comes (its default session, no cookie jar, no proxy)."""
    import aiohttp

    sessions: list[aiohttp.ClientSession] = []

    def session() -> aiohttp.ClientSession:
        if not sessions:
            connector = aiohttp.TCPConnector(limit=256, limit_per_host=256)
            sessions.append(aiohttp.ClientSession(connector=connector, trust_env=False))
        return sessions[0]

    async def chat_completions(request: Request) -> Response:
        body = await request.body()
        parsed, base_url = upstream_of(body, routes)
        if base_url is None:
            return REFUSED
        answer = await session().post(base_url + "/chat/completions", data=body, headers=FORWARDED_HEADERS)
        content_type = answer.headers.get("content-type", "application/json")
        if parsed.get("stream") is True:
            return StreamingResponse(
                answer.content.iter_any(),
                answer.status,
                media_type=content_type,
                background=BackgroundTask(answer.release),
            )
        return await whole_answer(answer, content_type)

    async def close() -> None:
        for opened in sessions:
            await opened.close()

    return proxy_app(chat_completions, close)


def build_app(routes: dict[str, str], client_library: str = "glasskey") -> Starlette:
    """The proxy app; ``routes`` maps a model name to its upstream base URL (ending in /v1).

    ``client_library`` is ``glasskey`` (aiohttp as glasskey sets it up), ``aiohttp`` (as it comes),
    ``httpx`` or ``httpx2`` (same API, another pool), to measure how much of the floor is the
    HTTP client's.
    """
    if client_library == "glasskey":
        return build_glasskey_app(routes)
    if client_library == "aiohttp":
        return build_aiohttp_app(routes)
    library: Any = importlib.import_module(client_library)
    client = library.AsyncClient(
        limits=library.Limits(max_connections=256, max_keepalive_connections=256),
        timeout=library.Timeout(60.0),
        trust_env=False,
    )

    async def chat_completions(request: Request) -> Response:
        body = await request.body()
        parsed, base_url = upstream_of(body, routes)
        if base_url is None:
            return REFUSED
        upstream = client.build_request("POST", base_url + "/chat/completions", content=body, headers=FORWARDED_HEADERS)
        answer = await client.send(upstream, stream=True)
        content_type = answer.headers.get("content-type", "application/json")
        if parsed.get("stream") is True:
            return StreamingResponse(
                answer.aiter_raw(),
                answer.status_code,
                media_type=content_type,
                background=BackgroundTask(answer.aclose),
            )
        try:
            content = await answer.aread()
        finally:
            await answer.aclose()
        return Response(content, answer.status_code, media_type=content_type)

    return proxy_app(chat_completions, client.aclose)


def parse_routes(values: list[str]) -> dict[str, str]:
    routes = {}
    for value in values:
        model, sep, url = value.partition("=")
        if not sep or not url.startswith("http://127.0.0.1:"):
            raise SystemExit(f"--route wants MODEL=http://127.0.0.1:PORT/v1 (loopback only), not {value!r}")
        routes[model] = url.rstrip("/")
    return routes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--route", action="append", default=[], help="MODEL=UPSTREAM_BASE_URL; repeat it")
    parser.add_argument(
        "--client", choices=CLIENTS, default="glasskey", help="the upstream HTTP client (glasskey: as glasskey runs it)"
    )
    args = parser.parse_args(argv)
    app = build_app(parse_routes(args.route), args.client)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "auto",
        http="httptools" if importlib.util.find_spec("httptools") else "auto",
        access_log=False,
        log_level="warning",
        workers=1,
    )


if __name__ == "__main__":
    main()
