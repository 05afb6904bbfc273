"""At every start, stored routes are checked: unsealed credentials sealed, refused upstreams reported."""

from __future__ import annotations

import logging

import pytest

from conftest_helpers import NOW, make_settings
from glasskey.pricing.catalog import Prices
from glasskey.routing.credentials import is_sealed
from glasskey.routing.routes import Route, create_route, get_route
from glasskey.services import build_services

PRICES = Prices(1_000_000, 2_000_000, 0)


def _route(route_id: str, base_url: str, credential: str | None = None) -> Route:
    return Route(
        id=route_id,
        model="gpt-4o-mini",
        provider="openai_compatible",
        base_url=base_url,
        upstream_model="m",
        settlement="routed",
        prices=PRICES,
        costs=PRICES,
        credential=credential,
    )


def test_a_stored_route_the_policy_now_refuses_is_reported_and_kept(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    services = build_services(make_settings(tmp_path))
    with services.db.write() as conn:  # written before the policy existed, as an older version could
        create_route(conn, _route("rt-metadata", "http://169.254.169.254/latest"), NOW)
        create_route(conn, _route("rt-loopback", "http://127.0.0.1:11434/v1", credential="sk-plain-0123456789"), NOW)
        create_route(conn, _route("rt-public", "https://api.example.com/v1"), NOW)
    services.close()

    with caplog.at_level(logging.WARNING, logger="glasskey.routing"):
        restarted = build_services(make_settings(tmp_path, allow_private_upstreams=False))
    try:
        warned = {record.getMessage().split(":")[0] for record in caplog.records if record.levelno == logging.WARNING}
        assert warned == {"route rt-metadata", "route rt-loopback"}
        with restarted.db.read() as conn:
            assert get_route(conn, "rt-metadata").enabled  # kept as it was: the operator decides
            stored = get_route(conn, "rt-loopback").credential
        assert is_sealed(stored) and restarted.vault.open(stored) == "sk-plain-0123456789"
    finally:
        restarted.close()
