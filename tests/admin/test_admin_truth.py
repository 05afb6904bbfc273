"""The admin API refuses what would not happen: lower-cost on an official key, an option no provider reads."""

from __future__ import annotations

from admin.test_admin_api import assert_error, client, create_key, create_org

__all__ = ["client"]


def test_an_official_key_with_lower_cost_routes_is_a_400(client) -> None:
    org = create_org(client)
    refused = client.post(
        "/keys", json={"org_id": org["id"], "name": "k", "settlement": "official", "lower_cost_routes": True}
    )
    error = assert_error(refused, 400, "client", "lower_cost_routes")
    assert "only to routed keys" in error["message"]
    key = create_key(client, org["id"], settlement="routed", lower_cost_routes=True)
    assert_error(
        client.patch(f"/keys/{key['id']}", json={"settlement": "official"}), 400, "client", "lower_cost_routes"
    )
    changed = client.patch(f"/keys/{key['id']}", json={"settlement": "official", "lower_cost_routes": False})
    assert changed.status_code == 200, changed.text


def test_a_route_option_its_provider_does_not_read_is_a_400(client) -> None:
    body = {
        "model": "gpt-4o-mini", "provider": "simulated", "base_url": "", "upstream_model": "gpt-4o-mini",
        "settlement": "routed", "options": {"fail_rate": 1},
        "price_per_mtok_micros": {"input": 1, "output": 1, "cached": 1},
        "cost_per_mtok_micros": {"input": 1, "output": 1, "cached": 1},
    }  # fmt: skip
    error = assert_error(client.post("/routes", json=body), 400, "client", "options.fail_rate")
    assert "error_rate" in error["message"]
