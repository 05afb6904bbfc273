"""glasskey's upstream HTTP client: HTTP/1.1 keep-alive on ``asyncio.Protocol``, httptools parsing.

On the hot path the upstream client is most of the event loop's work: a general client (aiohttp,
httpx) spends far more on its own machinery than on the bytes. This one does only what the
gateway needs: one pool per (event loop, origin), idle connections reused last-in first-out, a
request written in one ``transport.write``, an answer parsed by httptools (llhttp) straight into
a buffer its reader drains. It follows no redirects, reads no proxy settings and keeps no cookies.

A connection goes back to its pool only when its answer was read to the end, was HTTP/1.1 and
did not say ``connection: close``; anything else (a failure, a cancellation, a reader that
stopped early) closes it. A request on a reused connection that the server had closed while it
was idle fails before any byte of an answer; it is sent once more on a fresh connection. Once a
byte has arrived it is never retried.

Only the connect timeout is the client's; every other limit is the caller's timer, which cancels
the waiting task, and a cancelled request closes its connection.

Errors (each a ``WireError``)::

    WireError
    ├── ConnectError        the connection could not be opened (refused, unreachable, unknown host)
    │   └── TLSError        the TLS handshake failed, certificate verification included
    ├── ConnectTimeout      the connection was not open within the connect timeout
    ├── ConnectionClosed    the server closed or reset the connection before the answer ended
    ├── ProtocolError       the answer is not HTTP we can read, or its compression is broken
    ├── BodyTooLarge        the (decompressed) body is larger than the caller's limit
    └── InvalidRequest      a URL or header that cannot be sent (a CR or LF in a header, say)
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import cast
from urllib.parse import quote, urlsplit

import httptools


class WireError(Exception):
    """Any failure of the client; the subclass says which."""


class ConnectError(WireError):
    pass


class TLSError(ConnectError):
    pass


class ConnectTimeout(WireError):
    pass


class ConnectionClosed(WireError):
    pass


class ProtocolError(WireError):
    pass


class BodyTooLarge(WireError):
    pass


class InvalidRequest(WireError):
    pass


CONNECTIONS_MAX = 256  # per origin, open and opening
KEEPALIVE_IDLE_S = 15.0  # an idle connection older than this is closed rather than reused
BUFFER_HIGH_BYTES = 256 * 1024  # reading pauses while more than this waits for the reader
ENDPOINTS_REMEMBERED = 1024
# Framing is the client's: a caller's header never overrides how the message is delimited.
FRAMING_HEADERS = frozenset(
    ("content-length", "transfer-encoding", "connection", "keep-alive", "accept-encoding", "te", "trailer", "upgrade")
)
PATH_SAFE = "/%:@!$&'()*+,;=-._~"
QUERY_SAFE = PATH_SAFE + "?"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a URL goes: its origin (the pool's key), the address, and the request target."""

    origin: str
    host: str
    port: int
    tls: bool
    host_header: str
    target: str


def endpoint_of(url: str) -> Endpoint:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidRequest(f"unsupported URL scheme {scheme!r}")
    host = parts.hostname
    if not host:
        raise InvalidRequest("the URL has no host")
    try:
        port = parts.port
    except ValueError:
        raise InvalidRequest("the URL's port is not valid") from None
    tls = scheme == "https"
    default_port = 443 if tls else 80
    host_header = f"[{host}]" if ":" in host else host
    if port is not None and port != default_port:
        host_header += f":{port}"
    target = quote(parts.path or "/", safe=PATH_SAFE)
    if parts.query:
        target += "?" + quote(parts.query, safe=QUERY_SAFE)
    return Endpoint(f"{scheme}://{host_header}", host, port or default_port, tls, host_header, target)


def request_head(method: str, endpoint: Endpoint, headers: Mapping[str, str], body_length: int | None) -> bytes:
    """The request line and headers; ``body_length`` None sends no body (and no Content-Length)."""
    fields = {"host": f"Host: {endpoint.host_header}"}
    if body_length is not None:
        fields["content-type"] = "Content-Type: application/json"
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in FRAMING_HEADERS:
            continue
        # No header may end early and smuggle another in (a CR or LF in a value, a colon in a name).
        if "\r" in value or "\n" in value or "\x00" in value:
            raise InvalidRequest(f"the value of the header {name!r} cannot be sent")
        if not (name.isascii() and name.isprintable()) or ":" in name or " " in name:
            raise InvalidRequest(f"the header name {name!r} cannot be sent")
        fields[lowered] = f"{name}: {value}"
    lines = [f"{method} {endpoint.target} HTTP/1.1", *fields.values()]
    if body_length is not None:
        lines.append(f"Content-Length: {body_length}")
    lines.append("Accept-Encoding: identity\r\nConnection: keep-alive\r\n\r\n")
    return "\r\n".join(lines).encode("utf-8")


class Headers(Mapping[str, str]):
    """An answer's headers, looked up case-insensitively; a repeated header's values joined by ", "."""

    __slots__ = ("_items",)

    def __init__(self, items: dict[str, str]) -> None:
        self._items = items  # lower-cased names

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class _Decoder:
    """gzip or deflate undone as the body arrives, never producing more than the reader's limit."""

    __slots__ = ("_deflate", "_started", "_zlib")

    def __init__(self, encoding: str) -> None:
        self._deflate = encoding == "deflate"
        self._zlib = zlib.decompressobj(zlib.MAX_WBITS if self._deflate else 16 + zlib.MAX_WBITS)
        self._started = False

    def decode(self, data: bytes, length_max: int) -> bytes:
        try:
            out = self._zlib.decompress(data, length_max)
        except zlib.error as error:
            if not (self._deflate and not self._started):
                raise ProtocolError(f"the body's compression is broken: {error}") from None
            # Some servers send raw deflate (no zlib header), as browsers also accept.
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            self._deflate = False
            return self.decode(data, length_max)
        self._started = True
        return out

    def flush(self) -> bytes:
        return self._zlib.flush()


class Connection(asyncio.Protocol):
    """One connection and the exchange it carries (one at a time); fed by the event loop's callbacks."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.reused = False
        self.idle = False
        self.idle_since = 0.0
        self.closed = False
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self.active = False  # an exchange is under way
        self._reset(0)

    def _reset(self, body_bytes_max: int) -> None:
        self.answered = False  # a byte of the answer has arrived
        self.status = 0
        self.http_version = ""
        self.headers: Headers | None = None
        self.complete = False
        self.keep_alive = False
        self.error: WireError | None = None
        self._header_items: list[tuple[str, str]] = []
        self._informational = False
        self._until_eof = False
        self._decoder: _Decoder | None = None
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._received = 0
        self._body_bytes_max = body_bytes_max  # 0: no limit
        self._paused = False

    # -- the event loop's side ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()
        if not self.active or self.complete:
            return
        if self.error is None:
            if self.headers is not None and self._until_eof and exc is None:
                self._finish_body()  # a body delimited by the end of the connection has ended
            else:
                error = ConnectionClosed("the server closed the connection before the answer ended")
                error.__cause__ = exc
                self.error = error
        self._wake()

    def data_received(self, data: bytes) -> None:
        if not self.active or self.complete:
            # Bytes nobody asked for: the connection is out of step and cannot be trusted again.
            self.keep_alive = False
            self.abort()
            return
        self.answered = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ProtocolError("the server switched protocols"))
        except httptools.HttpParserError as error:
            self._fail(ProtocolError(f"the answer is not valid HTTP: {error}"))

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost decides what the end means

    def pause_writing(self) -> None:
        pass  # a request is one write of a few kilobytes: nothing waits behind it

    # -- httptools' callbacks ----------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_items.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:  # 1xx (103 Early Hints, say): the real answer follows it
            self._informational = True
            self._header_items = []
            return
        items: dict[str, str] = {}
        for name, value in self._header_items:
            items[name] = f"{items[name]}, {value}" if name in items else value
        self.status = status
        self.http_version = self._parser.get_http_version()
        self.headers = Headers(items)
        encoding = items.get("content-encoding", "").strip().lower()
        if encoding in ("gzip", "x-gzip", "deflate"):
            self._decoder = _Decoder("deflate" if encoding == "deflate" else "gzip")
        self._until_eof = (
            "content-length" not in items
            and "chunked" not in items.get("transfer-encoding", "").lower()
            and status not in (204, 304)
        )
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.error is not None:
            return
        if self._decoder is not None:
            room = self._body_bytes_max - self._received + 1 if self._body_bytes_max else 0
            try:
                body = self._decoder.decode(body, room)
            except ProtocolError as error:
                self._fail(error)
                return
        self._take(body)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        self.keep_alive = self._parser.should_keep_alive() and self._parser.get_http_version() == "1.1"
        self._finish_body()

    # -- the reader's side -------------------------------------------------------------------

    def _take(self, body: bytes) -> None:
        self._received += len(body)
        if self._body_bytes_max and self._received > self._body_bytes_max:
            self._fail(BodyTooLarge("the answer is larger than the limit"))
            return
        if body:
            self._buffer.append(body)
            self._buffered += len(body)
            if self._buffered > BUFFER_HIGH_BYTES and not self._paused and self.transport is not None:
                self._paused = True
                self.transport.pause_reading()
        self._wake()

    def _finish_body(self) -> None:
        if self._decoder is not None and self.error is None:
            self._take(self._decoder.flush())
        if self.error is None:
            self.complete = True
        self._wake()

    def _fail(self, error: WireError) -> None:
        self.error = error
        self._buffer.clear()
        self._buffered = 0
        self.abort()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        self._waiter = waiter = self.pool.loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    async def exchange(self, payload: bytes, body_bytes_max: int | None) -> None:
        """Send one request and wait for the answer's headers."""
        self._reset(body_bytes_max or 0)
        self.active = True
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            raise ConnectionClosed("the connection was closed while it was idle")
        transport.write(payload)
        while self.headers is None:
            if self.error is not None:
                raise self.error
            await self._wait()

    @property
    def readable(self) -> bool:
        return bool(self._buffer) or self.complete or self.error is not None

    async def read_chunk(self) -> bytes:
        while True:
            if self._buffer:
                buffer = self._buffer
                chunk = buffer[0] if len(buffer) == 1 else b"".join(buffer)
                buffer.clear()
                self._buffered = 0
                if self._paused and self.transport is not None:
                    self._paused = False
                    self.transport.resume_reading()
                return chunk
            if self.complete:
                return b""
            if self.error is not None:
                raise self.error
            await self._wait()

    @property
    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.closed and self.error is None

    def park(self) -> None:
        """The exchange is over and the connection goes idle; it reads again, to notice its end."""
        self.active = False
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def abort(self) -> None:
        """Close now, sending nothing more; the connection never returns to the pool."""
        self._forget()
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        """Close once what was written has gone (an idle connection being put away)."""
        self._forget()
        if self.transport is not None:
            self.transport.close()

    def _forget(self) -> None:
        if not self.closed:
            self.closed = True
            self.pool.forget(self)


class Response:
    """An answer: status and headers at once, the body read as it arrives, then released."""

    __slots__ = ("_connection", "headers", "http_version", "status")

    def __init__(self, connection: Connection) -> None:
        assert connection.headers is not None
        self._connection: Connection | None = connection
        self.status = connection.status
        self.headers = connection.headers
        self.http_version = connection.http_version

    def _open(self) -> Connection:
        if self._connection is None:
            raise ConnectionClosed("the answer was already released")
        return self._connection

    @property
    def readable(self) -> bool:
        """Whether the next read returns without waiting (data buffered, or the body ended or failed)."""
        return self._open().readable

    @property
    def buffered_bytes(self) -> int:
        """How much of the body has arrived and waits for the reader (bounded by flow control)."""
        return self._open()._buffered

    @property
    def complete(self) -> bool:
        """Whether the whole body has arrived."""
        return self._connection is not None and self._connection.complete

    async def read_chunk(self) -> bytes:
        """Whatever of the body has arrived (waiting for some), or ``b""`` once it has ended."""
        return await self._open().read_chunk()

    async def read(self) -> bytes:
        chunks = []
        while chunk := await self.read_chunk():
            chunks.append(chunk)
        return b"".join(chunks)

    def __aiter__(self) -> Response:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self.read_chunk()
        if not chunk:
            raise StopAsyncIteration
        return chunk

    def release(self) -> None:
        """Give the connection back if its answer was read to the end and it may be reused, else close it."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.pool.release(connection)

    def close(self) -> None:
        """Close the connection, whatever state its answer is in."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.abort()


class Pool:
    """The connections of one origin on one event loop: at most ``connections_max``, idle ones LIFO."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        endpoint: Endpoint,
        ssl_context: ssl.SSLContext | None,
        connections_max: int,
    ) -> None:
        self.loop = loop
        self.endpoint = endpoint
        self.ssl_context = ssl_context
        self.connections_max = connections_max
        self.idle: list[Connection] = []  # oldest first, so expired ones are at the front
        self.connections: set[Connection] = set()
        self._opening = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def size(self) -> int:
        return len(self.connections) + self._opening

    async def request(self, payload: bytes, connect_timeout_s: float | None, body_bytes_max: int | None) -> Response:
        fresh = False
        while True:
            connection = await self._acquire(connect_timeout_s, fresh=fresh)
            try:
                await connection.exchange(payload, body_bytes_max)
            except ConnectionClosed:
                connection.abort()
                # The server closed a kept-alive connection as we reused it; nothing of an answer came.
                if connection.reused and not connection.answered and not fresh:
                    fresh = True
                    continue
                raise
            except BaseException:
                connection.abort()  # a failure or a cancellation: the connection's state is unknown
                raise
            return Response(connection)

    async def _acquire(self, connect_timeout_s: float | None, *, fresh: bool) -> Connection:
        while True:
            if not fresh:
                connection = self._idle_connection()
                if connection is not None:
                    return connection
            elif self.size >= self.connections_max and self.idle:
                self.idle[0].close()  # a fresh connection is wanted: the oldest idle one makes room
            if self.size < self.connections_max:
                return await self._connect(connect_timeout_s)
            waiter = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # the wake-up this task will not use goes to the next
                elif waiter in self._waiters:
                    self._waiters.remove(waiter)
                raise

    def _idle_connection(self) -> Connection | None:
        idle = self.idle
        if idle and self.loop.time() - idle[0].idle_since > KEEPALIVE_IDLE_S:
            expired_before = self.loop.time() - KEEPALIVE_IDLE_S
            while idle and idle[0].idle_since < expired_before:
                idle[0].close()
        while idle:
            connection = idle.pop()
            connection.idle = False
            if not connection.closed:
                connection.reused = True
                return connection
        return None

    async def _connect(self, timeout_s: float | None) -> Connection:
        endpoint = self.endpoint
        self._opening += 1
        connection: Connection | None = None
        try:
            async with asyncio.timeout(timeout_s):
                _, connection = await self.loop.create_connection(
                    lambda: Connection(self),
                    endpoint.host,
                    endpoint.port,
                    ssl=self.ssl_context,
                    server_hostname=endpoint.host if self.ssl_context is not None else None,
                )
        except TimeoutError:
            raise ConnectTimeout(f"no connection to {endpoint.origin} within the connect timeout") from None
        except ssl.SSLError as error:
            raise TLSError(f"TLS with {endpoint.origin} failed: {error}") from error
        except OSError as error:
            raise ConnectError(f"cannot connect to {endpoint.origin}: {type(error).__name__}: {error}") from error
        finally:
            self._opening -= 1
            if connection is None:
                self._wake_one()  # the place it held is free again
        if not connection.closed:  # it may have been lost already, before this task ran again
            self.connections.add(connection)
        return connection

    def release(self, connection: Connection) -> None:
        if not connection.reusable:
            connection.abort()
            return
        connection.park()
        connection.idle = True
        connection.idle_since = self.loop.time()
        self.idle.append(connection)
        self._wake_one()

    def forget(self, connection: Connection) -> None:
        """A connection closed: it leaves the pool and its place goes to whoever waits."""
        self.connections.discard(connection)
        if connection.idle:
            connection.idle = False
            self.idle.remove(connection)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        for connection in list(self.connections):
            if connection.idle:
                connection.close()
            else:
                connection.abort()


class Client:
    """The pools of one owner, one per (event loop, origin): a pool belongs to the loop that made it."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None, connections_max: int = CONNECTIONS_MAX) -> None:
        self._ssl_context = ssl_context
        self.connections_max = connections_max
        self._pools: dict[tuple[int, str], Pool] = {}
        # Route URLs are few; parsing each once saves every request.
        self._endpoints: dict[str, Endpoint] = {}

    def _tls(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            # Verification on, hostname checked against SNI: the default context, made once.
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def pool(self, url: str) -> tuple[Pool, Endpoint]:
        endpoint = self._endpoints.get(url)
        if endpoint is None:
            if len(self._endpoints) >= ENDPOINTS_REMEMBERED:
                self._endpoints.clear()
            endpoint = self._endpoints[url] = endpoint_of(url)
        loop = asyncio.get_running_loop()
        key = (id(loop), endpoint.origin)
        pool = self._pools.get(key)
        if pool is None or pool.loop is not loop:
            # Tests run one loop after another; the pools of a finished loop can only be dropped.
            for stale, old in list(self._pools.items()):
                if old.loop.is_closed():
                    del self._pools[stale]
            ssl_context = self._tls() if endpoint.tls else None
            pool = self._pools[key] = Pool(loop, endpoint, ssl_context, self.connections_max)
        return pool, endpoint

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        connect_timeout_s: float | None = None,
        body_bytes_max: int | None = None,
    ) -> Response:
        """Send a request and return its answer once the headers are in (any status: no redirects).

        ``body`` None sends no body (a GET); the caller must release or close the answer.
        """
        pool, endpoint = self.pool(url)
        head = request_head(method, endpoint, headers, None if body is None else len(body))
        return await pool.request(head + body if body else head, connect_timeout_s, body_bytes_max)

    async def aclose(self) -> None:
        """Close every connection of this loop's pools (in use or idle)."""
        loop = asyncio.get_running_loop()
        for key, pool in list(self._pools.items()):
            if pool.loop is loop:
                pool.close()
                del self._pools[key]
        await asyncio.sleep(0)  # let the transports finish closing before the loop might end
