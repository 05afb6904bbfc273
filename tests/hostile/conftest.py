"""Fixtures of the standing attack suite: gateways shared by a module, and routes to fake upstreams.

Starting a gateway costs far more than one request, so the bad-input matrix shares one gateway
per engine for the whole module (``hostile_gateway``). Each case leaves at most a refused
request behind, which is what the matrix asserts is harmless.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from conftest_helpers import make_settings, postgres_schema_url
from gateway_fixtures import Gateway, _gateway
from glasskey.pricing.catalog import Prices, get_model
from glasskey.routing.routes import Route, create_route
from glasskey.services import build_services
from glasskey.store.tables import receipts

COMPATIBLE_MODEL = "gpt-4o"  # not among the seeded simulated routes, so its only route is the one added
ROUTE_CREDENTIAL = "sk-route-credential-0123456789abcdef"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hostile_gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One gateway per engine for a whole module (simulated routes, a routed and an official key)."""
    tmp_path = tmp_path_factory.mktemp(f"hostile-{request.param}")
    if request.param == "sqlite":
        yield from _gateway(build_services(make_settings(tmp_path)))
        return
    for url in postgres_schema_url():
        yield from _gateway(build_services(make_settings(tmp_path, database_url=url)))


@pytest.fixture
def fresh_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A SQLite gateway of its own for one test, for tests that count what it wrote."""
    yield from _gateway(build_services(make_settings(tmp_path_factory.mktemp("fresh"))))


def add_compatible_route(
    gateway: Gateway, base_url: str, *, credential: str | None = ROUTE_CREDENTIAL, options: dict[str, Any] | None = None
) -> str:
    """An ``openai_compatible`` route of ``COMPATIBLE_MODEL`` to ``base_url``; returns a key for it."""
    services = gateway.services
    with services.db.write() as conn:
        official = get_model(conn, COMPATIBLE_MODEL).official_prices
        prices = Prices(official.input_per_mtok_micros, official.output_per_mtok_micros, 0)
        route = Route(
            id=f"rt-compatible-{len(base_url)}-{abs(hash(base_url)) % 10_000}",
            model=COMPATIBLE_MODEL,
            provider="openai_compatible",
            base_url=base_url,
            upstream_model="upstream-model",
            settlement="routed",
            prices=prices,
            costs=prices,
            credential=credential,
            options=dict(options or {}),
        )
        create_route(conn, route, services.clock())
    return gateway.new_key(allowed_models=(COMPATIBLE_MODEL,), settlement="routed")


def receipt_of(gateway: Gateway, request_id: str) -> Any:
    with gateway.services.db.read() as conn:
        return conn.execute(select(receipts).where(receipts.c.request_id == request_id)).first()


@dataclass(frozen=True)
class Call:
    """One request of a batch: method, path under ``/v1``, a JSON value or raw bytes, headers."""

    method: str
    path: str
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    label: str = ""


def call(method: str, path: str, body: Any = None, *, key: str | None = None, label: str = "") -> Call:
    """A call with ``body`` written as JSON by the standard library (it writes any integer)."""
    content = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    return Call(method, path, content, headers, label)


def send_all(gateway: Gateway, calls: list[Call], concurrency: int = 16) -> list[httpx.Response]:
    """Send ``calls`` concurrently on kept-alive connections; the answers come back in order."""

    async def run() -> list[httpx.Response]:
        limit = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(base_url=gateway.v1, timeout=60) as client:

            async def one(item: Call) -> httpx.Response:
                async with limit:
                    response = await client.request(
                        item.method, item.path.lstrip("/"), content=item.content, headers=item.headers
                    )
                    await response.aread()
                    return response

            return list(await asyncio.gather(*(one(item) for item in calls)))

    return asyncio.run(run())
