"""The upstream address policy at connect time: an aiohttp resolver that drops refused addresses.

A route's base URL is judged when it is saved (``upstream_address.check_upstream_url``), but a host
name is only an address when it is resolved, and the answer may change afterwards: a name that
pointed at a public server when the route was saved can point at ``169.254.169.254`` or at the
gateway's own database today (DNS rebinding). So every answer is judged again, each time aiohttp
resolves a name before connecting: refused addresses are dropped, and when none is left the
connection fails as a name that does not resolve (the attempt fails with a 502, attributed to the
route's provider, and the request may fall back to another route).

Wire it with ``aiohttp.TCPConnector(resolver=UpstreamAddressResolver(allow_private=...))``. aiohttp
never calls a resolver for a literal IP address (and refuses the odd numeric forms such as
``2130706433``): those are judged when the route is saved, and reported at start-up otherwise.
Through an upstream proxy, aiohttp resolves the proxy's name, not the upstream's: the proxy must
enforce its own egress policy then.
"""

from __future__ import annotations

import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from glasskey.routing.upstream_address import UpstreamAddressRefused, check_resolved_address


class ResolvedOnlyToRefused(OSError):
    """A name whose every address the policy refuses; aiohttp wraps it in ``ClientConnectorDNSError``."""


class UpstreamAddressResolver(AbstractResolver):
    def __init__(self, *, allow_private: bool, inner: AbstractResolver | None = None) -> None:
        self.allow_private = allow_private
        self.inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self.inner.resolve(host, port, family)
        allowed, reasons = [], []
        for answer in answers:
            try:
                check_resolved_address(answer["host"], self.allow_private)
            except UpstreamAddressRefused as refused:
                reasons.append(refused.message)
                continue
            allowed.append(answer)
        if not allowed:
            # An OSError is what aiohttp expects of a failed resolution (ClientConnectorDNSError).
            raise ResolvedOnlyToRefused(f"{host} resolves only to refused addresses: {'; '.join(reasons[:3])}")
        return allowed

    async def close(self) -> None:
        await self.inner.close()
