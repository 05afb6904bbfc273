"""How one gateway process is served: uvicorn's limits, the per-address cap, and logging.

What is bounded here (issue 18 #9), and what is not, is listed in docs/security.md #9:

- ``GLASSKEY_CONNECTIONS_MAX`` is uvicorn's ``limit_concurrency``: past that many open connections
  (and tasks), uvicorn answers 503 itself, in plain text, before glasskey sees the request.
- ``GLASSKEY_CONNECTIONS_PER_ADDRESS_MAX`` bounds one client address twice. The protocol
  (``serving_protocol.PeerConnections``) counts open connections per TCP peer, idle and unfinished
  ones included; one more is a 503 ``source: client`` (``too_many_open_connections``), written and
  closed before the app sees anything. Peers uvicorn trusts for ``X-Forwarded-For`` (a reverse
  proxy on this host) are not counted there, so ``AddressCap`` counts requests in flight per client
  address as uvicorn reports it (the forwarded one behind such a proxy); one more is a 429
  ``source: client`` (``too_many_connections``). Both are per process.
- ``timeout_keep_alive``: an idle kept-alive connection is closed after 5 s.
- The request body has ``GLASSKEY_BODY_READ_TIMEOUT_SECONDS`` (``gateway.body_timeout``).
- The request line and headers have ``GLASSKEY_HEADER_READ_TIMEOUT_SECONDS`` and
  ``GLASSKEY_HEADERS_MAX_BYTES`` (408 and 431 ``source: client``): uvicorn's httptools protocol has
  neither, so glasskey serves with a subclass of it (``serving_protocol``).

``GLASSKEY_LOG_LEVEL`` sets glasskey's own loggers and uvicorn's; other libraries stay at WARNING,
so a DEBUG run does not print SQL parameters or upstream traffic. ``trace`` is not offered: it
makes uvicorn log every ASGI message, headers (keys) included.
"""

from __future__ import annotations

import copy
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from glasskey.errors import ClientError
from glasskey.gateway.http import error_response
from glasskey.ids import new_id
from glasskey.serving_protocol import bounded_protocol
from glasskey.settings import Settings

KEEP_ALIVE_SECONDS = 5
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging configuration, with glasskey's own loggers at ``level`` on stderr."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["glasskey"] = {"format": LOG_FORMAT}
    config["handlers"]["glasskey"] = {
        "class": "logging.StreamHandler",
        "formatter": "glasskey",
        "stream": "ext://sys.stderr",
    }
    config["loggers"]["glasskey"] = {"handlers": ["glasskey"], "level": level.upper(), "propagate": False}
    return config


def server_limits(settings: Settings) -> dict[str, Any]:
    """The uvicorn options that bound connections and set the logging, for ``uvicorn.Config``."""
    return {
        # httptools (a dependency) with the header read timeout and size bound glasskey adds to it.
        # and the cap on open connections per peer address (a PeerConnections per server).
        "http": bounded_protocol(
            settings.header_read_timeout_seconds, settings.headers_max_bytes, settings.connections_per_address_max
        ),
        "limit_concurrency": settings.connections_max,
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        "log_level": settings.log_level,
        "log_config": log_config(settings.log_level),
    }


class AddressCap:
    """At most ``per_address_max`` requests in flight per client address; one more is a 429.

    The protocol's cap on open connections already bounds a client that connects directly (a
    request in flight holds a connection); this one is what bounds each client behind a trusted
    reverse proxy, whose connections the protocol does not count per client."""

    def __init__(self, app: ASGIApp, per_address_max: int) -> None:
        self.app = app
        self.per_address_max = per_address_max
        # address -> requests in flight; an address leaves the map when its last request ends, so
        # the map holds at most as many entries as requests in flight (bounded by limit_concurrency).
        self._in_flight: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        # The wrapped app's attributes (``state``) stay reachable through the wrapper.
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] != "http" or not client:
            await self.app(scope, receive, send)
            return
        address = str(client[0])
        if self._in_flight.get(address, 0) >= self.per_address_max:
            refusal = ClientError(
                f"More than {self.per_address_max} requests at once from this address",
                code="too_many_connections",
                status_code=429,
                headers={"retry-after": "1"},
            )
            await error_response(refusal, new_id("req"))(scope, receive, send)
            return
        self._in_flight[address] = self._in_flight.get(address, 0) + 1
        try:
            await self.app(scope, receive, send)
        finally:
            left = self._in_flight[address] - 1
            if left:
                self._in_flight[address] = left
            else:
                del self._in_flight[address]
