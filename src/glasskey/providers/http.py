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
import os
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from glasskey.providers import wire
from glasskey.providers.base import ProviderError
from glasskey.providers.sse import Event, SSEParser, before_wait

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
        if options.keys().isdisjoint(TIMEOUT_OPTIONS):
            return DEFAULT_TIMEOUTS  # most routes; it is frozen, so sharing it is safe
        defaults = DEFAULT_TIMEOUTS
        return cls(
            connect_ms=int(options.get("timeout_connect_ms", defaults.connect_ms)),
            first_byte_ms=int(options.get("timeout_first_byte_ms", defaults.first_byte_ms)),
            chunk_gap_ms=int(options.get("timeout_chunk_gap_ms", defaults.chunk_gap_ms)),
            total_ms=int(options.get("timeout_total_ms", defaults.total_ms)),
        )


DEFAULT_TIMEOUTS = Timeouts()
TIMEOUT_OPTIONS = frozenset(("timeout_connect_ms", "timeout_first_byte_ms", "timeout_chunk_gap_ms", "timeout_total_ms"))


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


class UpstreamHTTP:
    """The upstream connections of one gateway process: ``wire``'s pools, one per event loop and origin.

    ``wire``, not aiohttp or httpx: on the hot path the HTTP client is most of the event loop's
    work, and a keep-alive client on ``asyncio.Protocol`` with httptools parsing costs a fraction
    of either per request. ``ssl_context`` replaces the default (verifying) TLS context: tests
    trust their own certificate with it.
    """

    def __init__(
        self,
        *,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        environ: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.client = wire.Client(ssl_context=ssl_context)
        self.max_response_bytes = max_response_bytes
        self.environ = os.environ if environ is None else environ

    async def aclose(self) -> None:
        """Close every connection of the current event loop's pools."""
        await self.client.aclose()

    async def _send(self, url: str, headers: Mapping[str, str], body: Any, timeouts: Timeouts) -> wire.Response:
        # The client enforces the connect timeout itself; the first byte is the caller's timer.
        return await self.client.request(
            "POST",
            url,
            headers=headers,
            body=orjson.dumps(body),
            connect_timeout_s=timeouts.connect_ms / 1000,
            body_bytes_max=self.max_response_bytes,
        )

    async def _read_all(self, response: wire.Response, clock: _Clock) -> bytes:
        chunks: list[bytes] = []
        while True:
            # A read that cannot wait cannot open a gap: only a waiting read is timed as one.
            if not response.readable:
                clock.arm(clock.chunk_gap_s, CHUNK_GAP)
            chunk = await response.read_chunk()
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    async def post_json(
        self, provider: str, url: str, *, headers: Mapping[str, str], body: Any, timeouts: Timeouts
    ) -> tuple[Any, Mapping[str, str]]:
        """POST a JSON body; the parsed 2xx answer, or ``UpstreamHTTPError``."""
        # One timer covers the whole exchange, moved from limit to limit: this coroutine never
        # yields to anyone else's code, so the timer can only ever cancel this exchange.
        clock = _Clock(timeouts)
        try:
            async with clock.start(clock.first_byte_s, FIRST_BYTE) as timer:
                response = await self._send(url, headers, body, timeouts)
                try:
                    raw = await self._read_all(response, clock)
                finally:
                    response.release()  # back to the pool if read to the end, else closed
        except (TimeoutError, wire.WireError) as error:
            raise _attributed(provider, error, clock.limit if timer.expired() else None) from None
        if response.status >= 300:
            raise UpstreamHTTPError(response.status, response.headers, raw[:65536])
        try:
            return orjson.loads(raw), response.headers
        except orjson.JSONDecodeError:
            raise ProviderError(provider, 502, "the upstream answered with invalid JSON") from None

    async def post_sse(
        self, provider: str, url: str, *, headers: Mapping[str, str], body: Any, timeouts: Timeouts
    ) -> AsyncIterator[Event]:
        """POST and yield the SSE events of the answer as they arrive.

        The consumer runs between events, so each wait has a timer of its own rather than one
        timer for the whole stream, which could fire while the consumer is busy elsewhere.
        """
        clock = _Clock(timeouts)
        deadline = clock.deadline
        try:
            async with clock.start(clock.first_byte_s, FIRST_BYTE) as timer:
                response = await self._send(url, headers, body, timeouts)
        except (TimeoutError, wire.WireError) as error:
            raise _attributed(provider, error, clock.limit if timer.expired() else None, "stream") from None
        read_to_the_end = False
        try:
            if response.status >= 300:
                raw = await self._read_waiting(provider, response, timeouts, deadline)
                read_to_the_end = True
                raise UpstreamHTTPError(response.status, response.headers, raw[:65536])
            parser = SSEParser()
            async for chunk in self._chunks(provider, response, timeouts, deadline):
                for event in parser.feed(chunk):
                    yield event
                await before_wait()  # the next read may wait: what was relayed goes out now
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

    async def _read_waiting(self, provider: str, response: wire.Response, timeouts: Timeouts, deadline: float) -> bytes:
        clock = _Clock(timeouts, deadline=deadline)
        try:
            async with clock.start(clock.chunk_gap_s, CHUNK_GAP) as timer:
                return await self._read_all(response, clock)
        except (TimeoutError, wire.WireError) as error:
            raise _attributed(provider, error, clock.limit if timer.expired() else None) from None

    async def _chunks(
        self, provider: str, response: wire.Response, timeouts: Timeouts, deadline: float
    ) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        gap_s = timeouts.chunk_gap_ms / 1000
        while True:
            now = loop.time()
            if now >= deadline:
                raise _timeout(provider, TOTAL)
            when, limit = now + gap_s, CHUNK_GAP
            if when >= deadline:
                when, limit = deadline, TOTAL
            try:
                # A read that returns at once (data already buffered) needs no timer set and cancelled.
                async with asyncio.timeout_at(None if response.readable else when) as timer:
                    chunk = await response.read_chunk()
            except (TimeoutError, wire.WireError) as error:
                raise _attributed(provider, error, limit if timer.expired() else None, "stream") from None
            if not chunk:
                return
            yield chunk


FIRST_BYTE = "first byte"
CHUNK_GAP = "chunk gap"
TOTAL = "the whole request"


class _Clock:
    """The timer of one exchange and the limit it stands for now, so that a timeout can be named.

    Each limit counts from the moment it is armed, but never past the whole request's deadline.
    An ``asyncio.Timeout`` rather than anyio cancel scopes: on asyncio each scope costs several
    times more, and a request would enter one per limit and per chunk. The timer cancels only its
    own task and turns only its own cancellation into ``TimeoutError``, so an outer cancellation
    (the client left) still arrives as a cancellation.
    """

    __slots__ = ("chunk_gap_s", "deadline", "first_byte_s", "limit", "timer")

    def __init__(self, timeouts: Timeouts, *, deadline: float | None = None) -> None:
        self.first_byte_s = timeouts.first_byte_ms / 1000
        self.chunk_gap_s = timeouts.chunk_gap_ms / 1000
        if deadline is None:
            deadline = asyncio.get_running_loop().time() + timeouts.total_ms / 1000
        self.deadline = deadline
        self.limit = TOTAL
        self.timer = asyncio.timeout_at(None)

    def _until(self, seconds: float, limit: str) -> float:
        when = asyncio.get_running_loop().time() + seconds
        if when >= self.deadline:
            when, limit = self.deadline, TOTAL
        self.limit = limit
        return when

    def start(self, seconds: float, limit: str) -> asyncio.Timeout:
        """The timer, set for its first limit: the one ``async with`` the exchange runs in."""
        self.timer = asyncio.timeout_at(self._until(seconds, limit))
        return self.timer

    def arm(self, seconds: float, limit: str) -> None:
        self.timer.reschedule(self._until(seconds, limit))


def _attributed(provider: str, error: BaseException, limit: str | None, what: str = "response") -> ProviderError:
    """A network failure or timeout as ``ProviderError`` naming the provider (and the limit)."""
    if limit is not None:
        return _timeout(provider, limit)
    if isinstance(error, wire.ConnectTimeout):
        return _timeout(provider, "connect")
    if isinstance(error, wire.BodyTooLarge):
        return ProviderError(provider, 502, f"the upstream {what} is larger than the gateway accepts")
    if isinstance(error, TimeoutError):
        return _timeout(provider, type(error).__name__)
    return ProviderError(
        provider,
        502,
        f"network error talking to the upstream: {type(error).__name__}",
        error_type="network_error",
    )


def _timeout(provider: str, what: str) -> ProviderError:
    return ProviderError(provider, 504, f"the upstream timed out ({what})", error_type="timeout", timeout=True)
