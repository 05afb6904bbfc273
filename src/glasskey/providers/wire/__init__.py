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

from glasskey.providers.wire.connection import Connection, Response
from glasskey.providers.wire.message import (
    BUFFER_HIGH_BYTES,
    CONNECTIONS_MAX,
    KEEPALIVE_IDLE_S,
    BodyTooLarge,
    ConnectError,
    ConnectionClosed,
    ConnectTimeout,
    Endpoint,
    Headers,
    InvalidRequest,
    ProtocolError,
    TLSError,
    WireError,
    endpoint_of,
    request_head,
)
from glasskey.providers.wire.pool import Client, Pool

__all__ = [
    "BUFFER_HIGH_BYTES",
    "CONNECTIONS_MAX",
    "KEEPALIVE_IDLE_S",
    "BodyTooLarge",
    "Client",
    "ConnectError",
    "ConnectTimeout",
    "Connection",
    "ConnectionClosed",
    "Endpoint",
    "Headers",
    "InvalidRequest",
    "Pool",
    "ProtocolError",
    "Response",
    "TLSError",
    "WireError",
    "endpoint_of",
    "request_head",
]
