"""The HTTP/1.1 protocol glasskey serves with: uvicorn's httptools protocol, with its headers bounded.

uvicorn's httptools protocol reads a request's line and headers with no time limit and no size
limit (issue 18 #9): a client that never finishes its headers holds a connection for good, and a
header line of 20 MB was accepted. This subclass adds both, before the app sees anything:

- **Time.** From the moment a connection is made (for its first request) or a request's first byte
  arrives (for the next ones on a kept-alive connection), the line and headers must be complete
  within ``header_read_timeout_seconds``; past it the client gets a 408 in the brief's error shape
  (``source: client``, ``code: header_read_timeout``) and the connection is closed. One timer per
  request: armed here, cancelled when the headers are complete, so the hot path pays a
  ``call_later`` and a ``cancel``. The body's own timeout is the app's (``gateway.body_timeout``),
  and an idle kept-alive connection is still closed by uvicorn's keep-alive timer.
- **Size.** The request line and headers (the URL, each header's name and value) may hold at most
  ``headers_max_bytes``; more is a 431 (``code: headers_too_large``) and the connection is
  closed. httptools collects a header line in full before handing it over, so the bytes read while
  the headers are unfinished are counted too: headers that never end are refused after
  ``headers_max_bytes`` plus at most one read of the socket, and never held in memory past that.

- **Open connections per address.** Every connection is counted, from ``connection_made`` to
  ``connection_lost``, under its TCP peer's address in a ``PeerConnections`` the server owns (one
  per ``uvicorn.Config``, so one per process: each worker of ``glasskey serve --workers`` unpickles
  its own). A connection past ``connections_per_address_max`` of its address is answered 503
  (``source: client``, ``code: too_many_open_connections``, ``retry-after: 1``) and closed at
  once, before it sends anything; idle kept-alive connections and connections still sending their
  headers count, which ``serving.AddressCap`` (requests in flight) cannot see. A peer uvicorn
  trusts for ``X-Forwarded-For`` (``forwarded_allow_ips``: 127.0.0.1 and ::1 by default) is not
  counted: a reverse proxy there carries many clients over its connections, and those clients are
  told apart by ``AddressCap``, which sees the forwarded address.

The refusals are written to the socket by the protocol itself: no app, no receipt (no key was read).
"""

from __future__ import annotations

import asyncio
import json
from functools import partial
from typing import Any

from uvicorn.config import Config
from uvicorn.middleware.proxy_headers import _TrustedHosts
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from glasskey.errors import ClientError, error_body
from glasskey.ids import new_id


class HeadersTooLarge(Exception):
    """Raised inside a parser callback to stop parsing a request whose headers are over the bound."""


class PeerConnections:
    """Open connections per TCP peer address, for one server (all its protocols share it).

    Only the event loop's thread touches it (``connection_made`` and ``connection_lost`` are loop
    callbacks), so it needs no lock. An address leaves the map with its last connection: the map
    holds at most as many entries as connections open."""

    def __init__(self, per_address_max: int) -> None:
        self.per_address_max = per_address_max
        self.open: dict[str, int] = {}
        # Peers whose connections are not counted (uvicorn's trusted proxies); read from the
        # server's config at its first connection, since the config is made after this object.
        self._trusted: _TrustedHosts | None = None
        self._trusted_read = False

    def admit(self, address: str, config: Config) -> bool:
        """Count a new connection from ``address``; False (and not counted) when it is one too many."""
        if not self._trusted_read:
            # uvicorn's own parser of forwarded_allow_ips (addresses, networks, "*"), so the peers
            # exempted here are exactly those whose X-Forwarded-For uvicorn believes.
            self._trusted = _TrustedHosts(config.forwarded_allow_ips) if config.proxy_headers else None
            self._trusted_read = True
        if self._trusted is not None and address in self._trusted:
            return True
        count = self.open.get(address, 0)
        if count >= self.per_address_max:
            return False
        self.open[address] = count + 1
        return True

    def release(self, address: str) -> None:
        left = self.open.get(address, 0) - 1
        if left > 0:
            self.open[address] = left
        else:
            self.open.pop(address, None)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header read timeout, a header size bound and a cap on
    open connections per peer address."""

    def __init__(
        self,
        *args: Any,
        header_read_timeout_seconds: float,
        headers_max_bytes: int,
        peer_connections: PeerConnections,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.header_read_timeout_seconds = header_read_timeout_seconds
        self.headers_max_bytes = headers_max_bytes
        self.peer_connections = peer_connections
        # The peer address this connection is counted under, once admitted (trusted proxies: None).
        self._counted_as: str | None = None
        # Armed while a request's line and headers are being read, None otherwise.
        self._header_timer: asyncio.TimerHandle | None = None
        # Bytes of the read being parsed now.
        self._chunk_bytes = 0
        # Bytes read off the socket while the current request's headers were unfinished.
        self._unfinished_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.client is not None:  # a unix socket has no peer address to count
            address = str(self.client[0])
            if not self.peer_connections.admit(address, self.config):
                self._refuse(
                    ClientError(
                        f"More than {self.peer_connections.per_address_max} open connections from this address",
                        code="too_many_open_connections",
                        status_code=503,
                        headers={"retry-after": "1"},
                    )
                )
                return
            if address in self.peer_connections.open:
                self._counted_as = address
        # A connection that sends nothing at all is held by nothing else: its first request's
        # headers are timed from the connection, not from their first byte.
        self._header_timer = self.loop.call_later(self.header_read_timeout_seconds, self._headers_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        if self._counted_as is not None:
            self.peer_connections.release(self._counted_as)
            self._counted_as = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._chunk_bytes = len(data)
        super().data_received(data)
        if self._header_timer is not None and not self.transport.is_closing():
            # The headers are still unfinished after this read: what was read of them so far is
            # what the parser holds, whether or not it has handed any header over yet.
            self._unfinished_bytes += len(data)
            if self._unfinished_bytes > self.headers_max_bytes:
                self._refuse(self._too_large())

    def send_400_response(self, msg: str) -> None:
        # A refusal raised in a parser callback reaches uvicorn as a parser error; its answer is
        # already written and the connection closing, so uvicorn's plain-text 400 is not sent.
        if not self.transport.is_closing():
            super().send_400_response(msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:  # the first request keeps the timer armed at connection_made
            self._header_timer = self.loop.call_later(self.header_read_timeout_seconds, self._headers_timed_out)

    def on_headers_complete(self) -> None:
        self._stop_header_timer()
        # The bytes read while the headers were unfinished, this read included, bound their size
        # from above; only when that bound is over the limit are the headers counted one by one
        # (a request with a large body in the same read), so a usual request pays one comparison.
        if self._unfinished_bytes + self._chunk_bytes > self.headers_max_bytes:
            size = len(self.url) + sum(len(name) + len(value) for name, value in self.headers)
            if size > self.headers_max_bytes:
                self._refuse(self._too_large())
                raise HeadersTooLarge  # stops the parser; uvicorn's error path finds the transport closing
        self._unfinished_bytes = 0
        super().on_headers_complete()

    def _too_large(self) -> ClientError:
        return ClientError(
            f"The request line and headers are larger than {self.headers_max_bytes} bytes",
            code="headers_too_large",
            status_code=431,
        )

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined request's headers are unfinished while an answer is still being written:
            # never write into that answer; judge the headers again a timeout later.
            self._header_timer = self.loop.call_later(self.header_read_timeout_seconds, self._headers_timed_out)
            return
        self._refuse(
            ClientError(
                f"The request line and headers did not arrive within {self.header_read_timeout_seconds:g} s",
                code="header_read_timeout",
                status_code=408,
            )
        )

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _refuse(self, error: ClientError) -> None:
        """Answer ``error`` in the brief's shape and close the connection (no app saw the request)."""
        self._stop_header_timer()
        body = json.dumps(error_body(error, new_id("req"))).encode()
        head = [f"HTTP/1.1 {error.status_code} {_REASONS[error.status_code]}".encode()]
        head += [f"{name}: {value}".encode("latin-1") for name, value in error.headers.items()]
        head += [b"content-type: application/json", b"content-length: %d" % len(body), b"connection: close"]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        self.transport.close()


_REASONS = {408: "Request Timeout", 431: "Request Header Fields Too Large", 503: "Service Unavailable"}


def bounded_protocol(
    header_read_timeout_seconds: float, headers_max_bytes: int, connections_per_address_max: int
) -> Any:
    """The protocol factory for ``uvicorn.Config(http=...)``, with a ``PeerConnections`` of its own.

    A ``partial`` of a module-level class, so it pickles into the worker processes of
    ``glasskey serve --workers`` (uvicorn hands its config to each spawned worker, and each
    unpickles its own, empty ``PeerConnections``: the cap is per process)."""
    return partial(
        BoundedHttpToolsProtocol,
        header_read_timeout_seconds=header_read_timeout_seconds,
        headers_max_bytes=headers_max_bytes,
        peer_connections=PeerConnections(connections_per_address_max),
    )
