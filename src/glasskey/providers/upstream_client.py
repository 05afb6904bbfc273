"""How glasskey's upstream HTTP client (aiohttp) is set up, and how its failures are named.

One ``aiohttp.ClientSession`` per event loop, shared by every route and provider, set up for a
gateway that forwards paid requests:

* **never a POST twice**: aiohttp resends a request on a kept-alive connection the server
  dropped only for idempotent methods (RFC 9112 9.3.1.1); glasskey only sends POST, so a request
  that may have reached the upstream is never sent again (``test_upstream_http`` counts it);
* **bounded headers**: at most ``HEADERS_MAX`` header lines of at most ``HEADER_FIELD_BYTES_MAX``
  bytes each, about 1 MiB in all; an answer past that is a 502;
* **TLS cut short**: a body delimited by the end of the connection counts only if the TLS session
  ended with close_notify; a bare TCP close is a truncation, a 502 (asyncio hides the difference,
  so the ``ssl_object`` of the connection is asked once the body has ended);
* **happy eyeballs**: a host with several addresses gets a connection attempt on the next one
  every ``HAPPY_EYEBALLS_DELAY_S``, so a broken IPv6 route costs a quarter second, not the whole
  connect timeout;
* **proxy only when asked**: ``trust_env=False`` always, so ``HTTPS_PROXY``, ``HTTP_PROXY`` and
  ``.netrc`` in the environment are never read; ``GLASSKEY_UPSTREAM_PROXY`` names the proxy;
* **compression**: gzip and deflate, brotli (the ``brotli`` package) and zstd (``backports.zstd``
  before Python 3.14) are accepted and undone in bounded pieces as the body is read, so the
  caller's size cap applies to the decompressed body and a decompression bomb is a 502;
* **the address policy at connect time** (DNS rebinding, docs/security.md #12): every address a
  host name resolves to is judged by ``routing.guarded_resolver`` before a connection is opened,
  and a literal IP host (which aiohttp never resolves) by ``check_resolved_address`` before the
  request is sent; a refusal is a 502 naming the policy. Through a proxy the proxy resolves names;
* no redirects followed, no cookies kept (the pool serves every client: one client's cookie
  must never ride on another's request).
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import Coroutine, Mapping
from typing import Any

import aiohttp
import yarl
from aiohttp.connector import Connection
from multidict import CIMultiDict

from glasskey.errors import GlasskeyError
from glasskey.providers.base import ProviderError
from glasskey.routing.guarded_resolver import ResolvedOnlyToRefused, UpstreamAddressResolver
from glasskey.routing.upstream_address import UpstreamAddressRefused, check_resolved_address

CONNECTIONS_MAX = 4096  # in all, open and opening
CONNECTIONS_PER_HOST_MAX = 256
KEEPALIVE_IDLE_S = 15.0  # an idle connection older than this is closed rather than reused
HAPPY_EYEBALLS_DELAY_S = 0.25
HEADERS_MAX = 128
HEADER_FIELD_BYTES_MAX = 8190  # one header line (and the status line)
CONNECT_TIMEOUTS_REMEMBERED = 64
URLS_REMEMBERED = 256  # parsed upstream URLs and their policy verdicts kept; routes are few
NO_BODY_STATUSES = frozenset((204, 304))


class BodyTooLarge(GlasskeyError):
    """The (decompressed) body is larger than the gateway accepts."""

    def __init__(self, message: str = "the upstream's answer is larger than the gateway accepts") -> None:
        super().__init__(message)


class TruncatedBody(GlasskeyError):
    """A body delimited by the end of a TLS connection ended without the TLS session's close_notify."""

    def __init__(self, message: str = "the upstream's TLS connection ended without close_notify") -> None:
        super().__init__(message)


class InvalidRequest(GlasskeyError):
    """A request that cannot be sent as it is (a header value holding a line break)."""

    def __init__(self, message: str = "the upstream request holds a header that cannot be sent") -> None:
        super().__init__(message)


class AddressRefused(GlasskeyError):
    """The upstream's host is an address the upstream address policy refuses."""


class UpstreamResponse(aiohttp.ClientResponse):
    """aiohttp's answer, with the TLS session it came over, asked at the end of the body."""

    tls: ssl.SSLObject | None = None

    def start(self, connection: Connection) -> Coroutine[Any, Any, aiohttp.ClientResponse]:
        # Before the headers are read: a short body may end, and its connection close, before
        # the caller ever sees this answer. A plain method handing back aiohttp's own coroutine,
        # not a coroutine awaiting it: one coroutine fewer per request (yappi: 4.8 -> 3.2 units).
        transport = connection.transport
        self.tls = transport.get_extra_info("ssl_object") if transport is not None else None
        return super().start(connection)


def ended_cleanly(response: aiohttp.ClientResponse) -> bool:
    """Whether a body that has just ended was whole: always, unless it was delimited by the end of
    a TLS connection that closed without close_notify."""
    tls = response.tls if isinstance(response, UpstreamResponse) else None
    if tls is None or response.content_length is not None or response.status in NO_BODY_STATUSES:
        return True
    if "chunked" in response.headers.get("transfer-encoding", "").lower():
        return True
    # The connection is closed (that is how this body ended), so nothing else reads this session.
    try:
        tls.read(1)
    except ssl.SSLZeroReturnError:
        return True  # close_notify: the server ended the session on purpose
    except ssl.SSLError:
        return False  # no close_notify (want-read) or a broken session
    return False


def request_headers(headers: Mapping[str, str]) -> Mapping[str, str]:
    """The caller's headers, with the JSON content type unless the caller named one."""
    if "content-type" in headers:
        # Named already (the providers write it in lower case): aiohttp copies the headers into a
        # multidict of its own anyway, so a copy here would be made for nothing.
        return headers
    sent = CIMultiDict(headers)
    sent.setdefault("content-type", "application/json")
    return sent


class Sessions:
    """The aiohttp session of each event loop: a session belongs to the loop that made it."""

    def __init__(
        self, *, ssl_context: ssl.SSLContext | None, proxy: str | None, allow_private_upstreams: bool = True
    ) -> None:
        self.ssl_context = ssl_context
        self.proxy = proxy
        self.allow_private_upstreams = allow_private_upstreams
        # URL -> (the URL parsed, the policy's refusal of its host or None): a route's URL is parsed
        # and judged once, and aiohttp is handed the parsed URL so it does not parse it again.
        self._urls: dict[str, tuple[yarl.URL, str | None]] = {}
        self._sessions: dict[int, tuple[asyncio.AbstractEventLoop, aiohttp.ClientSession]] = {}
        # Connect timeouts are few (one per route setting); building each once saves every request.
        self._timeouts: dict[int, aiohttp.ClientTimeout] = {}

    def session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        found = self._sessions.get(id(loop))
        if found is not None and found[0] is loop and not found[1].closed:
            return found[1]
        # Tests run one loop after another; the sessions of a finished loop can only be dropped.
        for key, (old_loop, _) in list(self._sessions.items()):
            if old_loop.is_closed():
                del self._sessions[key]
        connector = aiohttp.TCPConnector(
            limit=CONNECTIONS_MAX,
            limit_per_host=CONNECTIONS_PER_HOST_MAX,
            keepalive_timeout=KEEPALIVE_IDLE_S,
            happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY_S,
            ssl=self.ssl_context if self.ssl_context is not None else True,
            # Through a proxy, aiohttp resolves only the proxy's name: the proxy owns egress then.
            resolver=None if self.proxy else UpstreamAddressResolver(allow_private=self.allow_private_upstreams),
        )
        session = aiohttp.ClientSession(
            connector=connector,
            trust_env=False,
            proxy=self.proxy,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=True,
            max_line_size=HEADER_FIELD_BYTES_MAX,
            max_field_size=HEADER_FIELD_BYTES_MAX,
            max_headers=HEADERS_MAX,
            response_class=UpstreamResponse,
        )
        self._sessions[id(loop)] = (loop, session)
        return session

    def timeout(self, connect_ms: int) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(connect_ms)
        if timeout is None:
            if len(self._timeouts) >= CONNECT_TIMEOUTS_REMEMBERED:
                self._timeouts.clear()
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_ms / 1000)
            self._timeouts[connect_ms] = timeout
        return timeout

    async def post(self, url: str, headers: Mapping[str, str], body: bytes, connect_ms: int) -> aiohttp.ClientResponse:
        """Send a POST and return its answer once the headers are in (any status: no redirects)."""
        parsed = self.checked_url(url)
        try:
            return await self.session().post(
                parsed, data=body, headers=headers, allow_redirects=False, timeout=self.timeout(connect_ms)
            )
        except aiohttp.ClientError:
            raise  # some of them are ValueErrors too (a certificate that fails verification)
        except ValueError:
            # A header aiohttp refuses to write (a CR or LF that would smuggle another header in).
            raise InvalidRequest from None

    def checked_url(self, url: str) -> yarl.URL:
        """``url`` parsed; ``AddressRefused`` when its host is a literal IP address the policy refuses.

        aiohttp never hands a literal address to the resolver, so the connect-time check of a
        name cannot see it; the route's URL was judged when it was saved, but the setting may
        have changed since. The verdict is remembered with the parsed URL: a route's URL is
        parsed and judged once (parse, judge and aiohttp's parse again: 0.44 µs a request, now 0.17).
        """
        found = self._urls.get(url)
        if found is None:
            parsed = yarl.URL(url)
            found = (parsed, literal_host_refusal(parsed.host or "", self.allow_private_upstreams))
            if len(self._urls) >= URLS_REMEMBERED:
                self._urls.clear()
            self._urls[url] = found
        if found[1] is not None:
            raise AddressRefused(found[1])
        return found[0]

    async def aclose(self) -> None:
        """Close this loop's session and every connection it holds."""
        found = self._sessions.pop(id(asyncio.get_running_loop()), None)
        if found is not None:
            await found[1].close()


def literal_host_refusal(host: str, allow_private: bool) -> str | None:
    """Why the policy refuses ``host`` when it is a literal IP address; None when it is allowed or a name."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None  # a name: the resolver judges what it resolves to
    try:
        check_resolved_address(address, allow_private)
    except UpstreamAddressRefused as refused:
        return refused.message
    return None


def attributed(provider: str, error: BaseException, limit: str | None, what: str = "response") -> ProviderError:
    """A network failure or timeout as ``ProviderError`` naming the provider (and the limit)."""
    if limit is not None:
        return timed_out(provider, limit)
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        return timed_out(provider, "connect")
    if isinstance(error, BodyTooLarge):
        return ProviderError(provider, 502, f"the upstream {what} is larger than the gateway accepts")
    if isinstance(error, AddressRefused):
        return ProviderError(provider, 502, f"upstream address refused by policy: {error.message}")
    if isinstance(error, aiohttp.ClientConnectorDNSError) and isinstance(error.os_error, ResolvedOnlyToRefused):
        return ProviderError(provider, 502, f"upstream address refused by policy: {error.os_error}")
    if isinstance(error, TruncatedBody):
        return ProviderError(
            provider,
            502,
            f"the upstream {what} was cut short (TLS closed without close_notify)",
            error_type="network_error",
        )
    if isinstance(error, TimeoutError):
        return timed_out(provider, type(error).__name__)
    return ProviderError(
        provider,
        502,
        f"network error talking to the upstream: {type(error).__name__}",
        error_type="network_error",
    )


def timed_out(provider: str, what: str) -> ProviderError:
    return ProviderError(provider, 504, f"the upstream timed out ({what})", error_type="timeout", timeout=True)
