"""Which upstream addresses a route may point at: the gateway is not a way into its own network.

A route's base URL is chosen by an operator, but a leaked admin token, a careless copy-paste or
a hostile name server could aim it at the cloud metadata service (instance credentials), at the
gateway's own database or Redis, or smuggle a password in the URL. So, always refused:

* userinfo in the URL (``https://user:pass@host``): a credential belongs in the route's sealed
  credential, and ``@`` is the classic way to make a URL look like it goes elsewhere;
* link-local addresses (``169.254.0.0/16``, ``fe80::/10``), cloud metadata addresses and names
  (``169.254.169.254``, ``fd00:ec2::254``, ``100.100.100.200``, ``metadata.google.internal``, ...),
  and addresses that are never a server (unspecified ``0.0.0.0``/``::``, multicast, reserved);
* IPv4 written in the forms a resolver still accepts (``2852039166``, ``0xa9fea9fe``,
  ``0251.0376.0251.0376``): they are read as the address they mean, then judged.

Loopback and private ranges (``127.0.0.0/8``, ``::1``, ``10/8``, ``172.16/12``, ``192.168/16``,
``100.64/10``, ``fc00::/7`` and names such as ``localhost`` or ``*.internal``) are refused unless
``allow_private`` (the ``allow_private_upstreams`` setting) is on: a self-hosted model on the
operator's own network is legitimate, but only when the operator says so.

``check_upstream_url`` judges a URL when a route is created or changed; ``check_resolved_address``
judges each address a name resolves to, at connect time (a name that resolved to a public
address yesterday may resolve to 169.254.169.254 today: DNS rebinding). Both are pure.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit

from glasskey.errors import ClientError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_NAMES = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal"}
)
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address) for address in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
NEVER_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "169.254.0.0/16",  # link-local: the metadata services live here
        "fe80::/10",
        "0.0.0.0/8",  # "this network": 0.0.0.0 reaches the gateway's own host
        "::/128",
        "224.0.0.0/4",  # multicast
        "ff00::/8",
        "240.0.0.0/4",  # reserved, and the broadcast address
        "fec0::/10",  # deprecated site-local
    )
)
PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "127.0.0.0/8",
        "::1/128",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",  # carrier-grade NAT, also used inside clouds
        "fc00::/7",
        "192.0.0.0/24",
        "198.18.0.0/15",
    )
)
# Names that only ever mean something on a private network (RFC 6761, RFC 6762 appendix G).
PRIVATE_NAME_SUFFIXES = ("localhost", "local", "internal", "intranet", "private", "corp", "home", "lan", "home.arpa")
# What a host name may contain; anything else (spaces, backslashes, percent signs) is refused
# before any resolver could read it differently from this module.
_HOST_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}$")


class UpstreamAddressRefused(ClientError):
    code = "upstream_address_refused"


def _refused(reason: str) -> UpstreamAddressRefused:
    return UpstreamAddressRefused(f"base_url refused: {reason} (see docs/security.md)", param="base_url")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped ``::ffff:a.b.c.d``, NAT64, 6to4), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in ipaddress.ip_network("64:ff9b::/96"):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def check_resolved_address(ip: str | IPAddress, allow_private: bool) -> None:
    """Refuse (``UpstreamAddressRefused``) an address an upstream connection must not reach."""
    address = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            address = ipaddress.IPv6Address(str(address).split("%", 1)[0])
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            check_resolved_address(embedded, allow_private)
    if address in METADATA_ADDRESSES:
        raise _refused(f"{address} is a cloud metadata address")
    for network in NEVER_NETWORKS:
        if address in network:
            raise _refused(f"{address} is in {network}, which is never an upstream")
    if not allow_private:
        for network in PRIVATE_NETWORKS:
            if address in network:
                raise _refused(f"{address} is a loopback or private address; set allow_private_upstreams to allow it")


def _numeric_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The address of a host written as IPv4 in any form ``inet_aton`` accepts, or None."""
    if not _NUMERIC_HOST.match(host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        raise _refused(f"{host!r} is neither a host name nor an address") from None


def check_upstream_url(url: str, allow_private: bool) -> None:
    """Refuse (``UpstreamAddressRefused``) a base URL a route may not have.

    Only the URL is judged: a host name is resolved at connect time, by ``check_resolved_address``.
    """
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in url) or "\\" in url:
        raise _refused("it contains whitespace, a control character or a backslash")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError:
        raise _refused("it is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise _refused("it must be an http(s) URL")
    if "@" in parts.netloc:
        raise _refused("it carries a user name or password; give the credential to the route instead")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise _refused("it has no host")
    if parts.netloc.startswith("["):
        try:
            address: IPAddress = ipaddress.IPv6Address(host)
        except ValueError:
            raise _refused(f"{host!r} is not an IPv6 address") from None
        check_resolved_address(address, allow_private)
        return
    numeric = _numeric_ipv4(host)
    if numeric is not None:
        check_resolved_address(numeric, allow_private)
        return
    if not _HOST_NAME.match(host):
        raise _refused(f"{host!r} is not a valid host name")
    if host in METADATA_NAMES:
        raise _refused(f"{host} is a cloud metadata service")
    if not allow_private and any(host == suffix or host.endswith("." + suffix) for suffix in PRIVATE_NAME_SUFFIXES):
        raise _refused(f"{host} names a host on a private network; set allow_private_upstreams to allow it")
