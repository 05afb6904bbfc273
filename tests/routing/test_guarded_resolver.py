"""The upstream address policy at connect time: names that resolve to refused addresses never connect."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from gateway_fixtures import ServerThread
from glasskey.routing.guarded_resolver import UpstreamAddressResolver


class Answers(AbstractResolver):
    """A resolver that answers what a (hostile) name server would."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            {"hostname": host, "host": a, "port": port, "family": family, "proto": 0, "flags": 0}
            for a in self.addresses
        ]

    async def close(self) -> None:
        return None


def _resolve(resolver: AbstractResolver) -> list[str]:
    return [answer["host"] for answer in asyncio.run(resolver.resolve("rebound.example.com", 443))]


def test_a_name_rebound_to_metadata_or_link_local_never_resolves() -> None:
    for addresses in (("169.254.169.254",), ("fe80::1", "169.254.1.1")):
        with pytest.raises(OSError, match="refused"):
            _resolve(UpstreamAddressResolver(allow_private=True, inner=Answers(*addresses)))


def test_refused_answers_are_dropped_and_allowed_ones_kept() -> None:
    mixed = Answers("10.0.0.7", "93.184.216.34", "127.0.0.1")
    assert _resolve(UpstreamAddressResolver(allow_private=False, inner=mixed)) == ["93.184.216.34"]
    assert _resolve(UpstreamAddressResolver(allow_private=True, inner=mixed)) == [
        "10.0.0.7",
        "93.184.216.34",
        "127.0.0.1",
    ]


@pytest.mark.parametrize("allow_private", [False, True])
def test_an_aiohttp_connection_to_localhost_obeys_the_setting(allow_private: bool) -> None:
    app = Starlette(routes=[Route("/", lambda request: PlainTextResponse("reached"))])

    async def fetch(url: str) -> str:
        connector = aiohttp.TCPConnector(resolver=UpstreamAddressResolver(allow_private=allow_private))
        async with aiohttp.ClientSession(connector=connector) as session, session.get(url) as response:
            return await response.text()

    with ServerThread(app) as server:
        url = server.base_url.replace("127.0.0.1", "localhost") + "/"
        if allow_private:
            assert asyncio.run(fetch(url)) == "reached"
        else:
            with pytest.raises(aiohttp.ClientConnectorError):
                asyncio.run(fetch(url))
