"""A real loopback upstream whose every answer a test scripts: status, headers, body chunks.

Provider tests that need an exact byte stream (a chunk held back, a 200 with an error body) use
it instead of a transport mock, so they exercise the same HTTP client as production.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from gateway_fixtures import ServerThread


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    status: int
    chunks: Callable[[], AsyncIterator[bytes]]
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})


def slow_chunks(*parts: bytes, pause_seconds: float) -> Callable[[], AsyncIterator[bytes]]:
    """A body sent in ``parts``, with a pause between each."""

    async def chunks() -> AsyncIterator[bytes]:
        for index, part in enumerate(parts):
            if index:
                await asyncio.sleep(pause_seconds)
            yield part

    return chunks


def body_of(*parts: bytes) -> Callable[[], AsyncIterator[bytes]]:
    async def chunks() -> AsyncIterator[bytes]:
        for part in parts:
            yield part

    return chunks


@contextmanager
def scripted_upstream(answer: Callable[[Seen], Answer]) -> Iterator[tuple[str, list[Seen]]]:
    """Serve ``answer`` on loopback; yields the base URL and the requests it received."""
    seen: list[Seen] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = Seen(
            scope["method"],
            scope["path"],
            scope["query_string"].decode(),
            {k.decode(): v.decode() for k, v in scope["headers"]},
            body,
        )
        seen.append(request)
        reply = answer(request)
        headers = [(k.encode(), v.encode()) for k, v in reply.headers.items()]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        async for chunk in reply.chunks():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    with ServerThread(app) as server:
        yield server.base_url, seen
