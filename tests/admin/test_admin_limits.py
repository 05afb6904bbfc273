"""Every amount and count the admin API takes has a maximum: a huge number is a JSON 400, never a 500.

And route base URLs obey the upstream address policy (docs/security.md): refused with
``upstream_address_refused`` whatever the route's provider, on create and on change.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from admin.test_admin_api import AUTH, COSTS, PRICES, assert_error, create_org, create_route
from conftest_helpers import make_settings
from glasskey.admin import build_admin_app
from glasskey.limits import (
    BUDGET_MAX_MICROS,
    PRICE_MAX_MICROS_PER_MTOK,
    PRIORITY_MAX,
    RPM_LIMIT_MAX,
    TOP_UP_MAX_MICROS,
    WEIGHT_MAX,
)
from glasskey.services import Services, build_services

HUGE = [2**63, 2**63 - 1, 2**64 + 1, 10**40]


def _client(services: Services) -> Iterator[TestClient]:
    app = Starlette(routes=[Mount("/admin/api", app=build_admin_app(services))])
    with TestClient(app, base_url="http://testserver/admin/api", headers=AUTH) as test_client:
        yield test_client


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    yield from _client(services)


@pytest.fixture
def strict_client(tmp_path) -> Iterator[TestClient]:
    """The admin API of a gateway that allows no private upstreams (the production default)."""
    services = build_services(make_settings(tmp_path, allow_private_upstreams=False))
    try:
        yield from _client(services)
    finally:
        services.close()


def _requests(org_id: str, key_id: str, route_id: str, value: int) -> list[tuple[str, str, dict[str, Any], str]]:
    prices = {**PRICES, "output": value}
    return [
        ("POST", f"/orgs/{org_id}/wallets/credit/topups", {"amount_micros": value}, "amount_micros"),
        ("POST", "/keys", {"org_id": org_id, "name": "k", "budget_total_micros": value}, "budget_total_micros"),
        ("POST", "/keys", {"org_id": org_id, "name": "k", "budget_daily_micros": value}, "budget_daily_micros"),
        ("POST", "/keys", {"org_id": org_id, "name": "k", "rpm_limit": value}, "rpm_limit"),
        ("PATCH", f"/keys/{key_id}", {"rpm_limit": value}, "rpm_limit"),
        ("PATCH", f"/keys/{key_id}", {"budget_total_micros": value}, "budget_total_micros"),
        ("PATCH", f"/routes/{route_id}", {"priority": value}, "priority"),
        ("PATCH", f"/routes/{route_id}", {"priority": -value}, "priority"),
        ("PATCH", f"/routes/{route_id}", {"weight": value}, "weight"),
        ("PATCH", f"/routes/{route_id}", {"price_per_mtok_micros": prices}, "price_per_mtok_micros.output"),
        ("PATCH", f"/routes/{route_id}", {"cost_per_mtok_micros": prices}, "cost_per_mtok_micros.output"),
        ("PUT", "/models/gpt-4o-mini/price", {"price_per_mtok_micros": prices}, "price_per_mtok_micros.output"),
    ]


@pytest.mark.parametrize("value", HUGE)
def test_a_huge_number_anywhere_is_a_json_400_from_the_client(client: TestClient, value: int) -> None:
    org = create_org(client)
    key = client.post("/keys", json={"org_id": org["id"], "name": "k"}).json()
    route = create_route(client)
    for method, path, body, param in _requests(org["id"], key["id"], route["id"], value):
        response = client.request(method, path, json=body)
        error = assert_error(response, 400, "client", param)
        assert str(value) not in error["message"]
    # Nothing moved: the wallet is empty and the ledger is whole.
    assert client.get(f"/orgs/{org['id']}/wallets/credit").json()["posted_micros"] == 0
    assert client.get("/ledger/audit").json()["ok"] is True


@pytest.mark.parametrize("value", HUGE)
def test_org_limits_and_audit_pages_refuse_huge_numbers(client: TestClient, value: int) -> None:
    org = create_org(client)
    for field in ("rpm_max", "key_lifetime_max_seconds", "budget_total_max_micros"):
        refused = client.put(f"/orgs/{org['id']}/limits", json={field: value})
        assert_error(refused, 400, "client", field)
    assert_error(client.get("/audit", params={"before": str(value * 10)}), 400, "client", "before")


def test_the_maximums_themselves_are_accepted(client: TestClient) -> None:
    org = create_org(client)
    topped = client.post(f"/orgs/{org['id']}/wallets/credit/topups", json={"amount_micros": TOP_UP_MAX_MICROS})
    assert topped.status_code == 201, topped.text
    key = client.post("/keys", json={"org_id": org["id"], "name": "k", "budget_total_micros": BUDGET_MAX_MICROS})
    assert key.status_code == 201, key.text
    dear = {"input": PRICE_MAX_MICROS_PER_MTOK, "output": PRICE_MAX_MICROS_PER_MTOK, "cached": 0}
    assert create_route(client, price_per_mtok_micros=dear, cost_per_mtok_micros=COSTS)["priority"] == 100


def test_a_huge_integer_in_route_options_is_refused(client: TestClient) -> None:
    route = create_route(client)
    response = client.patch(f"/routes/{route['id']}", json={"options": {"latency_ms": 2**70}})
    assert_error(response, 400, "client", "options.latency_ms")


ALWAYS_REFUSED = [
    "http://169.254.169.254/latest/meta-data/",
    "http://metadata.google.internal/",
    "http://[fd00:ec2::254]/",
    "https://user:secret-pw@cheap.example.com/v1",
]


@pytest.mark.parametrize("base_url", ALWAYS_REFUSED)
def test_a_route_to_metadata_link_local_or_with_userinfo_is_refused(client: TestClient, base_url: str) -> None:
    refused = client.post(
        "/routes",
        json={
            "model": "gpt-4o-mini",
            "provider": "openai_compatible",
            "base_url": base_url,
            "upstream_model": "m",
            "settlement": "routed",
            "price_per_mtok_micros": PRICES,
            "cost_per_mtok_micros": COSTS,
        },
    )
    error = assert_error(refused, 400, "client", "base_url")
    assert error["code"] == "upstream_address_refused"
    assert "secret-pw" not in refused.text
    route = create_route(client)
    changed = client.patch(f"/routes/{route['id']}", json={"base_url": base_url})
    assert assert_error(changed, 400, "client", "base_url")["code"] == "upstream_address_refused"
    assert client.get("/routes").json()["data"][0]["base_url"] == "https://cheap.example.com/v1"


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:5432", "http://localhost:6379", "http://10.0.0.8/v1"])
def test_private_upstreams_need_the_setting(client: TestClient, strict_client: TestClient, base_url: str) -> None:
    assert create_route(client, base_url=base_url)["base_url"] == base_url  # the tests' settings allow them
    route = create_route(strict_client)
    refused = strict_client.patch(f"/routes/{route['id']}", json={"base_url": base_url})
    error = assert_error(refused, 400, "client", "base_url")
    assert "allow_private_upstreams" in error["message"]


def test_a_date_at_the_end_of_the_calendar_is_a_json_400(client: TestClient) -> None:
    org = create_org(client)
    response = client.get(f"/orgs/{org['id']}/wallets/credit/ledger", params={"before": "9999-12-31T23:59:59-01:00"})
    assert_error(response, 400, "client")


def test_the_openapi_document_states_every_maximum(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]

    def maximum(schema: str, field: str) -> object:
        spec = schemas[schema]["properties"][field]
        options = [spec, *spec.get("anyOf", [])]
        return next((option["maximum"] for option in options if "maximum" in option), None)

    assert maximum("TopUpBody", "amount_micros") == TOP_UP_MAX_MICROS
    assert maximum("CreateKeyBody", "budget_total_micros") == BUDGET_MAX_MICROS
    assert maximum("CreateKeyBody", "rpm_limit") == RPM_LIMIT_MAX
    assert maximum("PricesBody", "output") == PRICE_MAX_MICROS_PER_MTOK
    assert maximum("CreateRouteBody", "priority") == PRIORITY_MAX
    assert maximum("CreateRouteBody", "weight") == WEIGHT_MAX
