"""What goes over the wire: the errors, where a URL goes, the request's head, the answer's
headers and its decompression."""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlsplit


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


class Decoder:
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
