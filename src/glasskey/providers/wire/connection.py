"""One keep-alive connection and the exchange it carries; the answer its caller reads."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

import httptools

from glasskey.providers.wire.message import (
    BUFFER_HIGH_BYTES,
    BodyTooLarge,
    ConnectionClosed,
    Decoder,
    Headers,
    ProtocolError,
    WireError,
)

if TYPE_CHECKING:
    from glasskey.providers.wire.pool import Pool


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
        self._decoder: Decoder | None = None
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
            self._decoder = Decoder("deflate" if encoding == "deflate" else "gzip")
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
