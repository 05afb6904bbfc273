"""The connections of one origin (a pool per event loop) and the client that owns the pools."""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Mapping

from glasskey.providers.wire.connection import Connection, Response
from glasskey.providers.wire.message import (
    CONNECTIONS_MAX,
    ENDPOINTS_REMEMBERED,
    KEEPALIVE_IDLE_S,
    ConnectError,
    ConnectionClosed,
    ConnectTimeout,
    Endpoint,
    TLSError,
    endpoint_of,
    request_head,
)


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
