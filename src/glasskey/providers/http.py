"""HTTP to upstreams: aiohttp behind one facade, four timeouts, a size cap, no redirects.

* ``connect``: opening the connection;
* ``first byte``: from starting the request (connection included) to the response headers;
* ``chunk gap``: the longest silence between two pieces of a body (streams included);
* ``total``: the whole exchange.

Failures of the network or of a timeout become ``ProviderError`` (502 or 504) naming the
provider; a non-2xx answer is handed to the provider adapter as ``UpstreamHTTPError`` so it can
read the upstream's own error format. No message ever carries the credential: ``scrub`` removes
it, and any long fragment of it, from upstream text before it goes anywhere.

How the client is set up (pool, headers cap, proxy, TLS, compression) is ``providers.upstream_client``.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from glasskey.providers.base import ProviderError
from glasskey.providers.sse import PAUSE, Event, Pause, SSEParser
from glasskey.providers.upstream_client import (
    AddressRefused,
    BodyTooLarge,
    InvalidRequest,
    Sessions,
    TruncatedBody,
    attributed,
    ended_cleanly,
    request_headers,
    timed_out,
)

MAX_RESPONSE_BYTES = 32 * 1024 * 1024
ERROR_BODY_BYTES_MAX = 65536  # what of a non-2xx answer the provider adapter sees
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


class UpstreamHTTPError(ProviderError):
    """The upstream answered with a non-2xx status; ``body`` is its (capped) raw body, which the
    provider's adapter reads to raise a ``ProviderError`` in the upstream's own words."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        super().__init__("upstream", status, f"upstream status {status}")
        self.status = status
        self.upstream_headers = headers
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


UPSTREAM_FAILURES = (TimeoutError, aiohttp.ClientError, BodyTooLarge, TruncatedBody, InvalidRequest, AddressRefused)


class UpstreamHTTP:
    """The upstream connections of one gateway process: an aiohttp session per event loop.

    ``ssl_context`` replaces the default (verifying) TLS context: tests trust their own
    certificate with it. ``allow_private_upstreams`` is the address policy at connect time; it is
    on by default for a client built by hand (tests' fake upstreams listen on loopback), and
    ``build_services`` always passes the gateway's setting. ``proxy`` (the
    ``GLASSKEY_UPSTREAM_PROXY`` setting) sends every upstream call through that HTTP proxy; without
    it no proxy is used, whatever the environment says.
    """

    def __init__(
        self,
        *,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        environ: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        proxy: str | None = None,
        allow_private_upstreams: bool = True,
    ) -> None:
        self.sessions = Sessions(
            ssl_context=ssl_context, proxy=proxy or None, allow_private_upstreams=allow_private_upstreams
        )
        self.max_response_bytes = max_response_bytes
        self.environ = os.environ if environ is None else environ

    async def aclose(self) -> None:
        """Close every connection of the current event loop's session."""
        await self.sessions.aclose()

    async def _send(
        self, url: str, headers: Mapping[str, str], body: Any, timeouts: Timeouts
    ) -> aiohttp.ClientResponse:
        # aiohttp enforces the connect timeout itself; the first byte is the caller's timer. A POST
        # is never sent twice: aiohttp retries a dropped kept-alive connection for idempotent
        # methods only (RFC 9112 9.3.1.1), and test_upstream_http proves it for ours.
        response = await self.sessions.post(url, request_headers(headers), orjson.dumps(body), timeouts.connect_ms)
        length = response.content_length
        if length is not None and length > self.max_response_bytes:
            response.close()  # refused before a byte of the body is read or held
            raise BodyTooLarge
        return response

    async def _read_all(self, response: aiohttp.ClientResponse, clock: _Clock) -> bytes:
        chunks: list[bytes] = []
        size = 0
        content = response.content
        try:
            while True:
                # Once the whole body is in the buffer no read can wait, so no gap can open.
                if not content.is_eof():
                    clock.arm(clock.chunk_gap_s, CHUNK_GAP)
                chunk = await content.readany()
                if not chunk:
                    if not ended_cleanly(response):
                        raise TruncatedBody
                    return b"".join(chunks)
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise BodyTooLarge
                chunks.append(chunk)
        finally:
            # A failure's traceback keeps this frame alive as long as the error lives (a receipt,
            # a log record): it must not keep the body too.
            chunks.clear()

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
        except UPSTREAM_FAILURES as error:
            raise attributed(provider, error, clock.limit if timer.expired() else None) from None
        if response.status >= 300:
            raise UpstreamHTTPError(response.status, response.headers, raw[:ERROR_BODY_BYTES_MAX])
        try:
            return orjson.loads(raw), response.headers
        except orjson.JSONDecodeError:
            raise ProviderError(provider, 502, "the upstream answered with invalid JSON") from None

    async def post_sse(
        self,
        provider: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: Any,
        timeouts: Timeouts,
        pauses: bool = False,
    ) -> AsyncIterator[Event | Pause]:
        """POST and yield the SSE events of the answer as they arrive; with ``pauses``, ``PAUSE``
        after the events of each network read, before the next read may wait.

        The consumer runs between events, so each wait has a timer of its own rather than one
        timer for the whole stream, which could fire while the consumer is busy elsewhere.
        """
        clock = _Clock(timeouts)
        deadline = clock.deadline
        try:
            async with clock.start(clock.first_byte_s, FIRST_BYTE) as timer:
                response = await self._send(url, headers, body, timeouts)
        except UPSTREAM_FAILURES as error:
            raise attributed(provider, error, clock.limit if timer.expired() else None, "stream") from None
        read_to_the_end = False
        parser = SSEParser()
        try:
            if response.status >= 300:
                raw = await self._read_waiting(provider, response, timeouts, deadline)
                read_to_the_end = True
                raise UpstreamHTTPError(response.status, response.headers, raw[:ERROR_BODY_BYTES_MAX])
            size = 0
            async for chunk in self._chunks(provider, response, timeouts, deadline):
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise attributed(provider, BodyTooLarge(), None, "stream")
                event_too_large = False
                try:
                    for event in parser.feed(chunk):
                        yield event
                except ValueError:  # one event larger than the parser holds
                    event_too_large = True  # raised below, so the error keeps no parser buffer alive
                if event_too_large:
                    raise attributed(provider, BodyTooLarge(), None, "stream")
                if pauses:
                    yield PAUSE  # the next read may wait: a relay sends what it holds now
            read_to_the_end = True
            for event in parser.close():
                yield event
        finally:
            parser = SSEParser()  # an unfinished event is dropped, not kept by the error's traceback
            # A body read to its end gives its connection back to the pool; an unfinished one
            # (the consumer stopped, or it failed) cannot be reused and is closed.
            if read_to_the_end:
                response.release()
            else:
                response.close()

    async def _read_waiting(
        self, provider: str, response: aiohttp.ClientResponse, timeouts: Timeouts, deadline: float
    ) -> bytes:
        clock = _Clock(timeouts, deadline=deadline)
        try:
            async with clock.start(clock.chunk_gap_s, CHUNK_GAP) as timer:
                return await self._read_all(response, clock)
        except UPSTREAM_FAILURES as error:
            raise attributed(provider, error, clock.limit if timer.expired() else None) from None

    async def _chunks(
        self, provider: str, response: aiohttp.ClientResponse, timeouts: Timeouts, deadline: float
    ) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        gap_s = timeouts.chunk_gap_ms / 1000
        content = response.content
        while True:
            now = loop.time()
            if now >= deadline:
                raise timed_out(provider, TOTAL)
            when, limit = now + gap_s, CHUNK_GAP
            if when >= deadline:
                when, limit = deadline, TOTAL
            try:
                # A body already whole in the buffer needs no timer set and cancelled.
                async with asyncio.timeout_at(None if content.is_eof() else when) as timer:
                    chunk = await content.readany()
                    if not chunk and not ended_cleanly(response):
                        raise TruncatedBody
            except UPSTREAM_FAILURES as error:
                raise attributed(provider, error, limit if timer.expired() else None, "stream") from None
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

    __slots__ = ("chunk_gap_s", "deadline", "first_byte_s", "limit", "loop", "timer")

    def __init__(self, timeouts: Timeouts, *, deadline: float | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self.first_byte_s = timeouts.first_byte_ms / 1000
        self.chunk_gap_s = timeouts.chunk_gap_ms / 1000
        if deadline is None:
            deadline = self.loop.time() + timeouts.total_ms / 1000
        self.deadline = deadline
        self.limit = TOTAL
        # ``timer`` is set by ``start``, which every exchange calls before ``arm``: no placeholder
        # timer is made only to be replaced (1.05 -> 0.70 µs for a clock and its start).
        self.timer: asyncio.Timeout

    def _until(self, seconds: float, limit: str) -> float:
        when = self.loop.time() + seconds
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
