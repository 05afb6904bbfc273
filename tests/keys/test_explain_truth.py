"""A key's explanation says only what will happen: its words come from the routes that would serve."""

from __future__ import annotations

from typing import Any

import pytest

from conftest_helpers import NOW, make_settings
from gateway_fixtures import seed, simulated_route
from glasskey.errors import ClientError
from glasskey.explanation import explain_key, settlement_in_words
from glasskey.keys.policy import KeyPolicy
from glasskey.keys.service import KeyRecord, create_key, get_key, update_key
from glasskey.pricing.catalog import get_model
from glasskey.routing.routes import create_route
from glasskey.services import build_services

PEPPER = "pepper-for-tests-0123456789abcdef"


def view(model: str, provider: str, price: int, official: int) -> dict[str, Any]:
    prices = {"input": price, "output": price, "cached": price}
    return {
        "model": model,
        "route": {"provider": provider},
        "effective_price_per_mtok_micros": prices,
        "official_price_per_mtok_micros": {"input": official, "output": official, "cached": official},
    }


def test_settlement_words_name_the_simulated_provider_not_a_vendor():
    words = settlement_in_words("official", [view("gpt-4o-mini", "simulated", 5, 5)], {"gpt-4o-mini": "openai"})
    assert "simulated" in words and "vendor is called" in words
    assert "own vendor" not in words and "at list price" in words


def test_settlement_words_say_own_vendor_only_when_every_route_is_the_vendors():
    vendors = {"gpt-4o-mini": "openai", "claude-sonnet-4-5": "anthropic"}
    own = [view("gpt-4o-mini", "openai", 5, 5), view("claude-sonnet-4-5", "anthropic", 7, 7)]
    assert "each model's own vendor (anthropic, openai), at list price" in settlement_in_words("official", own, vendors)
    mixed = [view("gpt-4o-mini", "openai_compatible", 3, 5), view("claude-sonnet-4-5", "anthropic", 7, 7)]
    words = settlement_in_words("routed", mixed, vendors)
    assert "own vendor" not in words
    assert "openai_compatible for gpt-4o-mini" in words and "list price for claude-sonnet-4-5" in words
    assert "no route serves" in settlement_in_words("routed", [], vendors)


def test_the_demo_like_explanation_of_an_official_key_tells_the_truth(tmp_path):
    services = build_services(make_settings(tmp_path))
    try:
        seeded = seed(services)
        with services.db.write() as conn:
            official = get_model(conn, "gpt-4o").official_prices
            create_route(conn, simulated_route("rt-gpt-4o", "gpt-4o", official, settlement="official"), NOW)
            record, _ = create_key(
                conn,
                pepper=PEPPER,
                org_id=seeded["org_id"],
                name="official",
                policy=KeyPolicy(settlement="official"),
                now=NOW,
            )
            explanation = explain_key(conn, services.settings, get_key(conn, record.id), NOW)
    finally:
        services.close()
    assert "simulated provider" in explanation["settlement_in_words"]
    assert "own vendor" not in explanation["settlement_in_words"]
    assert explanation["lower_cost_routes_in_words"].startswith("off: lower-cost routes apply to routed keys only")


def test_lower_cost_routes_on_an_official_key_is_refused_at_create_and_update(tmp_path):
    services = build_services(make_settings(tmp_path))
    try:
        seeded = seed(services)
        with services.db.write() as conn:

            def new_key(settlement: str) -> KeyRecord:
                policy = KeyPolicy(settlement=settlement, lower_cost_routes=True)
                return create_key(conn, pepper=PEPPER, org_id=seeded["org_id"], name="k", policy=policy, now=NOW)[0]

            with pytest.raises(ClientError, match="lower-cost routes apply only to routed keys") as refused:
                new_key("official")
            assert refused.value.param == "lower_cost_routes"
            record = new_key("routed")
            with pytest.raises(ClientError, match="lower_cost_routes off"):
                update_key(conn, record.id, settlement="official")
            assert update_key(conn, record.id, settlement="official", lower_cost_routes=False).policy.settlement == (
                "official"
            )
    finally:
        services.close()
