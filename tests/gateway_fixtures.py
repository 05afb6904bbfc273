"""A real gateway on a loopback port (uvicorn in a thread) with a seeded org, routes and keys."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn

from conftest_helpers import make_settings, postgres_schema_url
from glasskey.app import build_app
from glasskey.errors import NotFound
from glasskey.keys.policy import KeyPolicy
from glasskey.keys.service import create_key
from glasskey.ledger import audit
from glasskey.orgs.service import create_org, top_up
from glasskey.pricing.catalog import Prices, get_model
from glasskey.receipts.records import get_receipt
from glasskey.routing.routes import Route, create_route
from glasskey.services import Services, build_services


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """Any ASGI app served by uvicorn on a free loopback port, in a thread, for one test."""

    def __init__(self, app: Any, **options: Any) -> None:
        """``options``: more of uvicorn's (``http=`` a protocol, as ``glasskey serve`` gives it; ``port=``
        one chosen beforehand, when the app must know its own address)."""
        port = options.pop("port", None) or free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on", **options
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test gateway did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@dataclass
class Gateway:
    services: Services
    base_url: str
    org_id: str
    routed_key: str
    official_key: str

    @property
    def v1(self) -> str:
        return f"{self.base_url}/v1"

    def new_key(self, **policy: Any) -> str:
        name = policy.pop("name", "test key")
        with self.services.db.write() as conn:
            _, full = create_key(
                conn,
                pepper=self.services.pepper,
                org_id=self.org_id,
                name=name,
                policy=KeyPolicy(**policy),
                now=self.services.clock(),
            )
        return full

    def audit_ok(self) -> None:
        with self.services.db.read() as conn:
            report = audit(conn)
        report.raise_if_broken()
        assert report.receipt_charges_micros == report.posted_charges_micros


MODELS = ("gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-flash")


def seed(
    services: Services, *, wallet_micros: int = 50_000_000, route_options: dict[str, Any] | None = None
) -> dict[str, str]:
    now = services.clock()
    with services.db.write() as conn:
        org = create_org(conn, "acme", now)
        for kind in ("credit", "routed"):
            if wallet_micros:
                top_up(conn, org.id, kind, wallet_micros, now)
        for name in MODELS:
            official = get_model(conn, name).official_prices
            routed = Prices(
                official.input_per_mtok_micros * 6 // 10,
                official.output_per_mtok_micros * 6 // 10,
                official.cached_per_mtok_micros * 6 // 10,
            )
            for settlement, prices in (("official", official), ("routed", routed)):
                route = simulated_route(
                    f"rt-{name}-{settlement}", name, prices, settlement=settlement, options=dict(route_options or {})
                )
                create_route(conn, route, now)
        _, routed_key = create_key(
            conn,
            pepper=services.pepper,
            org_id=org.id,
            name="routed",
            policy=KeyPolicy(allowed_models=MODELS, settlement="routed", lower_cost_routes=True),
            now=now,
        )
        _, official_key = create_key(
            conn,
            pepper=services.pepper,
            org_id=org.id,
            name="official",
            policy=KeyPolicy(allowed_models=("gpt-4o-mini",), settlement="official"),
            now=now,
        )
    return {"org_id": org.id, "routed_key": routed_key, "official_key": official_key}


def _gateway(services: Services, **options: Any) -> Iterator[Gateway]:
    seeded = seed(services)
    with ServerThread(build_app(services), **options) as server:
        yield Gateway(services=services, base_url=server.base_url, **seeded)
    services.close()


@pytest.fixture
def gateway(tmp_path) -> Iterator[Gateway]:
    yield from _gateway(build_services(make_settings(tmp_path)))


@pytest.fixture(params=["sqlite", "postgresql"])
def gateway_any_db(request: pytest.FixtureRequest, tmp_path) -> Iterator[Gateway]:
    if request.param == "sqlite":
        yield from _gateway(build_services(make_settings(tmp_path)))
        return
    for url in postgres_schema_url():
        yield from _gateway(build_services(make_settings(tmp_path, database_url=url)))


def simulated_route(route_id: str, model: str, prices: Prices, **fields: Any) -> Route:
    """A routed route of ``model`` to the built-in simulated provider, at cost ``prices``."""
    return Route(
        id=route_id,
        model=model,
        provider="simulated",
        base_url="",
        upstream_model=model,
        settlement=fields.pop("settlement", "routed"),
        prices=prices,
        costs=prices,
        **fields,
    )


def add_embedding_route(services: Services, model: str = "text-embedding-3-small") -> None:
    with services.db.write() as conn:
        route = simulated_route(f"rt-{model}", model, get_model(conn, model).official_prices)
        create_route(conn, route, services.clock())


def settled_receipt(services: Services, request_id: str, timeout_s: float = 10) -> dict[str, Any]:
    """The receipt of a stream that failed in band: the client hears of the failure (an error event)
    before the failed settlement commits, so the receipt may follow it by a moment."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with services.db.read() as conn:
                return get_receipt(conn, request_id)
        except NotFound:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
