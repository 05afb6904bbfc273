"""HTTP to upstreams: one pooled client per origin, four timeouts, a size cap, no redirects.

* ``connect``: opening the connection;
* ``first byte``: from starting the request (connection included) to the response headers;
* ``chunk gap``: the longest silence between two pieces of a body (streams included);
* ``total``: the whole exchange.

Failures of the network or of a timeout become ``ProviderError`` (502 or 504) naming the
provider; a non-2xx answer is handed to the provider adapter as ``UpstreamHTTPError`` so it can
read the upstream's own error format. No message ever carries the credential: ``scrub`` removes
it, and any long fragment of it, from upstream text before it goes anywhere.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import anyio
import orjson

from glasskey.providers.base import ProviderError
from glasskey.providers.sse import Event, SSEParser

MAX_RESPONSE_BYTES = 32 * 1024 * 1024
SCRUB_FRAGMENT_CHARS = 8


@dataclass(frozen=True)
class Timeouts:
    connect_ms: int = 5_000
    first_byte_ms: int = 120_000
    chunk_gap_ms: int = 60_000
    total_ms: int = 600_000

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Timeouts:
        """Per-route overrides: ``timeout_connect_ms``, ``timeout_first_byte_ms`` and so on."""
        defaults = cls()
        return cls(
            connect_ms=int(options.get("timeout_connect_ms", defaults.connect_ms)),
            first_byte_ms=int(options.get("timeout_first_byte_ms", defaults.first_byte_ms)),
            chunk_gap_ms=int(options.get("timeout_chunk_gap_ms", defaults.chunk_gap_ms)),
            total_ms=int(options.get("timeout_total_ms", defaults.total_ms)),
        )


class UpstreamHTTPError(Exception):
    """The upstream answered with a non-2xx status; ``body`` is its (capped) raw body."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        super().__init__(f"upstream status {status}")
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None


def scrub(text: str, secret: str | None) -> str:
    """``text`` without the secret or any fragment of it long enough to matter.

    Any 8-character run of the secret is removed, so a credential that happens to contain an
    ordinary word also wipes that word from the message: a lost word beats a leaked key.
    """
    if not secret:
        return text
    text = text.replace(secret, "[credential]")
    if len(secret) < SCRUB_FRAGMENT_CHARS:
        return text
    for size in range(len(secret) - 1, SCRUB_FRAGMENT_CHARS - 1, -1):
        for start in range(0, len(secret) - size + 1):
            fragment = secret[start : start + size]
            if fragment in text:
                text = text.replace(fragment, "[credential]")
    return text


def resolve_credential(credential: str | None, environ: Mapping[str, str]) -> str | None:
    """A route's credential, or ``env:NAME`` to read it from the gateway's environment."""
    if credential and credential.startswith("env:"):
        name = credential.removeprefix("env:")
        value = environ.get(name)
        if not value:
            raise ProviderError("gateway", 502, f"the route's credential variable {name} is not set")
        return value
    return credential


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class UpstreamHTTP:
    """The pooled clients of one gateway process, keyed by event loop and upstream origin.

    aiohttp, not httpx: on the hot path the HTTP client is most of the event loop's work, and
    aiohttp's C-accelerated parser and connection pool cost a fraction of httpx's per request.
    """

    def __init__(
        self, *, max_response_bytes: int = MAX_RESPONSE_BYTES, environ: Mapping[str, str] | None = None
    ) -> None:
        self._sessions: dict[tuple[int, str], aiohttp.ClientSession] = {}
        self.max_response_bytes = max_response_bytes
        self.environ = os.environ if environ is None else environ

    def _session(self, url: str) -> aiohttp.ClientSession:
        # A session belongs to the event loop that made it; tests run several loops in turn.
        key = (id(asyncio.get_running_loop()), _origin(url))
        session = self._sessions.get(key)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(limit=256, limit_per_host=256, ttl_dns_cache=300)
            session = aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=True)
            self._sessions[key] = session
        return session

    async def aclose(self) -> None:
        loop_id = id(asyncio.get_running_loop())
        for key, session in list(self._sessions.items()):
            if key[0] == loop_id:
                await session.close()
                del self._sessions[key]

    async def _open(
        self, provider: str, url: str, headers: Mapping[str, str], body: Any, timeouts: Timeouts
    ) -> aiohttp.ClientResponse:
        session = self._session(url)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect_ms / 1000)
        with _attributed(provider):
            # The first-byte clock starts when the request starts, connection setup included.
            with anyio.fail_after(timeouts.first_byte_ms / 1000):
                response = await session.post(
                    url, data=orjson.dumps(body), headers=dict(headers), allow_redirects=False, timeout=timeout
                )
        return response

    async def _read_all(self, provider: str, response: aiohttp.ClientResponse, timeouts: Timeouts) -> bytes:
        chunks: list[bytes] = []
        size = 0
        with _attributed(provider):
            async for chunk in _with_gap(response.content.iter_any(), timeouts.chunk_gap_ms):
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise ProviderError(provider, 502, "the upstream response is larger than the gateway accepts")
                chunks.append(chunk)
        return b"".join(chunks)

    async def post_json(
        self, provider: str, url: str, *, headers: Mapping[str, str], body: Any, timeouts: Timeouts
    ) -> tuple[Any, Mapping[str, str]]:
        """POST a JSON body; the parsed 2xx answer, or ``UpstreamHTTPError``."""
        with anyio.fail_after(timeouts.total_ms / 1000) as scope:
            try:
                response = await self._open(provider, url, headers, body, timeouts)
                try:
                    raw = await self._read_all(provider, response, timeouts)
                finally:
                    response.release()
            except TimeoutError:
                if scope.cancel_called:
                    raise _timeout(provider, "the whole request") from None
                raise
        if response.status >= 300:
            raise UpstreamHTTPError(response.status, response.headers, raw[:65536])
        try:
            return orjson.loads(raw), response.headers
        except orjson.JSONDecodeError:
            raise ProviderError(provider, 502, "the upstream answered with invalid JSON") from None

    async def post_sse(
        self, provider: str, url: str, *, headers: Mapping[str, str], body: Any, timeouts: Timeouts
    ) -> AsyncIterator[Event]:
        """POST and yield the SSE events of the answer as they arrive."""
        deadline = anyio.current_time() + timeouts.total_ms / 1000
        response = await self._open(provider, url, headers, body, timeouts)
        read_to_the_end = False
        try:
            if response.status >= 300:
                raw = await self._read_all(provider, response, timeouts)
                read_to_the_end = True
                raise UpstreamHTTPError(response.status, response.headers, raw[:65536])
            parser = SSEParser()
            size = 0
            with _attributed(provider):
                async for chunk in _with_gap(response.content.iter_any(), timeouts.chunk_gap_ms, deadline=deadline):
                    size += len(chunk)
                    if size > self.max_response_bytes:
                        raise ProviderError(provider, 502, "the upstream stream is larger than the gateway accepts")
                    for event in parser.feed(chunk):
                        yield event
                read_to_the_end = True
                for event in parser.close():
                    yield event
        finally:
            # A body read to its end gives its connection back to the pool; an unfinished one
            # (the consumer stopped, or it failed) cannot be reused and is closed.
            if read_to_the_end:
                response.release()
            else:
                response.close()


async def _with_gap(chunks: AsyncIterator[bytes], gap_ms: int, *, deadline: float = math.inf) -> AsyncIterator[bytes]:
    iterator = chunks.__aiter__()
    while True:
        wait = min(gap_ms / 1000, deadline - anyio.current_time())
        if wait <= 0:
            raise TimeoutError
        with anyio.fail_after(wait):
            try:
                chunk = await iterator.__anext__()
            except StopAsyncIteration:
                return
        yield chunk


class _attributed:
    """Turn network failures and timeouts into ``ProviderError`` naming the provider."""

    def __init__(self, provider: str) -> None:
        self.provider = provider

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc is None or isinstance(exc, ProviderError):
            return
        if isinstance(exc, TimeoutError):
            raise _timeout(self.provider, type(exc).__name__) from None
        if isinstance(exc, aiohttp.ClientError):
            raise ProviderError(
                self.provider,
                502,
                f"network error talking to the upstream: {type(exc).__name__}",
                error_type="network_error",
            ) from None


def _timeout(provider: str, what: str) -> ProviderError:
    return ProviderError(provider, 504, f"the upstream timed out ({what})", error_type="timeout", timeout=True)
