"""A route option its provider does not read is refused, naming the options that exist."""

from __future__ import annotations

import pytest

from conftest_helpers import NOW
from gateway_fixtures import simulated_route
from glasskey.errors import ClientError
from glasskey.pricing.catalog import Prices
from glasskey.providers.options import ROUTE_OPTIONS, known_options
from glasskey.routing.routes import PROVIDERS, create_route, update_route
from glasskey.services import Services


def test_a_misspelt_simulated_option_is_refused_naming_the_real_one(services: Services) -> None:
    with services.db.write() as conn, pytest.raises(ClientError) as refused:
        create_route(conn, simulated_route("rt-x", "gpt-4o-mini", Prices(1, 1, 1), options={"fail_rate": 1}), NOW)
    assert "fail_rate" in refused.value.message and "error_rate" in refused.value.message
    assert refused.value.param == "options.fail_rate"


def test_a_change_to_an_unknown_option_is_refused_and_known_ones_pass(services: Services) -> None:
    with services.db.write() as conn:
        create_route(conn, simulated_route("rt-x", "gpt-4o-mini", Prices(1, 1, 1), options={"error_rate": 0.5}), NOW)
        with pytest.raises(ClientError, match="organization"):
            update_route(conn, "rt-x", options={"organization": "org-1"})  # an openai option, not simulated's
        assert update_route(conn, "rt-x", options={"latency_ms": 5, "strict_params": True}).options["latency_ms"] == 5


def test_every_provider_has_its_list_and_every_list_holds_the_gateways_own():
    assert set(ROUTE_OPTIONS) == set(PROVIDERS)
    assert all("strict_params" in known_options(provider) for provider in PROVIDERS)
