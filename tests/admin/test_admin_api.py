"""The admin API, driven through a Starlette app that mounts it at ``/admin/api`` as the gateway does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from glasskey.admin import build_admin_app
from glasskey.app import build_app
from glasskey.services import Services

if TYPE_CHECKING:
    # Starlette's test client speaks httpx2; only its response type is named here.
    from httpx2 import Response

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CREDENTIAL = "sk-upstream-credential-0123456789abcdef"
PRICES = {"input": 150_000, "output": 600_000, "cached": 75_000}
COSTS = {"input": 100_000, "output": 400_000, "cached": 50_000}


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    app = Starlette(routes=[Mount("/admin/api", app=build_admin_app(services))])
    with TestClient(app, base_url="http://testserver/admin/api", headers=AUTH) as test_client:
        yield test_client


def assert_error(response: Response, status: int, source: str, param: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) >= {"message", "type", "code", "param", "request_id", "source"}
    assert error["source"] == source
    assert error["param"] == param
    assert error["request_id"] == response.headers["x-request-id"]
    assert error["request_id"].startswith("req_")
    return error


def create_org(client: TestClient, name: str = "acme") -> dict[str, Any]:
    response = client.post("/orgs", json={"name": name})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def create_key(client: TestClient, org_id: str, **policy: Any) -> dict[str, Any]:
    response = client.post("/keys", json={"org_id": org_id, "name": "nightly script", **policy})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def create_route(client: TestClient, **fields: Any) -> dict[str, Any]:
    body = {
        "model": "gpt-4o-mini",
        "provider": "openai_compatible",
        "base_url": "https://cheap.example.com/v1",
        "upstream_model": "gpt-4o-mini",
        "settlement": "routed",
        "price_per_mtok_micros": PRICES,
        "cost_per_mtok_micros": COSTS,
        "credential": CREDENTIAL,
        **fields,
    }
    response = client.post("/routes", json=body)
    assert response.status_code == 201, response.text
    route: dict[str, Any] = response.json()
    return route


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token-0123456789abcdef", ADMIN_TOKEN, "Basic abc"])
def test_every_endpoint_refuses_a_request_without_the_admin_token(
    client: TestClient, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    client.headers.pop("Authorization")
    requests: list[tuple[str, str, bytes | None]] = [
        ("GET", "/orgs", None),
        ("POST", "/orgs", b'{"name": "x"}'),
        ("POST", "/orgs", b"{not json"),  # the token is checked before the body is even read
        ("GET", "/keys/key_x", None),
        ("GET", "/ledger/audit", None),
        ("GET", "/nowhere", None),  # and before the path is routed, so no path is revealed
    ]
    for method, path, content in requests:
        response = client.request(method, path, headers=headers, content=content)
        error = assert_error(response, 401, "key")
        assert error["type"] == "authentication_error"
        assert response.headers["www-authenticate"] == "Bearer"
        assert ADMIN_TOKEN not in response.text


def test_every_response_carries_a_request_id(client: TestClient) -> None:
    first, second = client.get("/orgs"), client.get("/orgs")
    assert first.headers["x-request-id"].startswith("req_")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


def test_creating_an_org_opens_two_empty_wallets(client: TestClient) -> None:
    org = create_org(client)
    assert org["id"].startswith("org_")
    assert {w["kind"]: w["available_micros"] for w in org["wallets"]} == {"credit": 0, "routed": 0}
    wallets = client.get(f"/orgs/{org['id']}/wallets").json()
    assert wallets["object"] == "list"
    assert [(w["kind"], w["posted_micros"], w["held_micros"]) for w in wallets["data"]] == [
        ("credit", 0, 0),
        ("routed", 0, 0),
    ]
    assert client.get("/orgs/acme").json()["id"] == org["id"]
    assert [o["id"] for o in client.get("/orgs").json()["data"]] == [org["id"]]


def test_a_second_org_with_the_same_name_is_a_conflict(client: TestClient) -> None:
    create_org(client)
    assert_error(client.post("/orgs", json={"name": "acme"}), 409, "client", "name")


def test_an_unknown_org_is_not_found(client: TestClient) -> None:
    assert_error(client.get("/orgs/org_missing"), 404, "client")
    assert_error(client.get("/orgs/org_missing/wallets/credit"), 404, "client")


def test_a_replayed_top_up_moves_money_once(client: TestClient) -> None:
    org = create_org(client)
    path = f"/orgs/{org['id']}/wallets/routed/topups"
    headers = {"Idempotency-Key": "invoice-42"}
    first = client.post(path, json={"amount_micros": 5_000_000, "memo": "invoice 42"}, headers=headers)
    assert first.status_code == 201, first.text
    assert first.json()["replayed"] is False
    assert first.json()["wallet"]["available_micros"] == 5_000_000
    again = client.post(path, json={"amount_micros": 5_000_000, "memo": "invoice 42"}, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json()["replayed"] is True
    assert again.json()["transfer"]["id"] == first.json()["transfer"]["id"]
    wallet = client.get(f"/orgs/{org['id']}/wallets/routed").json()
    assert wallet["available_micros"] == 5_000_000
    assert client.get(f"/orgs/{org['id']}/wallets/credit").json()["available_micros"] == 0


def test_an_idempotency_key_reused_for_another_amount_is_a_conflict(client: TestClient) -> None:
    org = create_org(client)
    path = f"/orgs/{org['id']}/wallets/credit/topups"
    headers = {"Idempotency-Key": "k1"}
    assert client.post(path, json={"amount_micros": 1_000}, headers=headers).status_code == 201
    error = assert_error(
        client.post(path, json={"amount_micros": 2_000}, headers=headers), 409, "client", "Idempotency-Key"
    )
    assert error["code"] == "idempotency_key_reused"


def test_the_ledger_lists_top_ups_newest_first(client: TestClient) -> None:
    org = create_org(client)
    path = f"/orgs/{org['id']}/wallets/credit"
    for amount in (1_000_000, 2_000_000):
        assert client.post(f"{path}/topups", json={"amount_micros": amount}).status_code == 201
    ledger = client.get(f"{path}/ledger").json()
    assert ledger["object"] == "list"
    assert [t["amount_micros"] for t in ledger["data"]] == [2_000_000, 1_000_000]
    transfer = ledger["data"][0]
    assert (transfer["object"], transfer["kind"], transfer["status"]) == ("transfer", "topup", "posted")
    assert transfer["credit_account_id"] == client.get(path).json()["account_id"]
    assert client.get(f"{path}/ledger", params={"limit": 1}).json()["data"] == [transfer]
    assert client.get(f"/orgs/{org['id']}/wallets/routed/ledger").json()["data"] == []


@pytest.mark.parametrize("amount", [1.5, 1.0, "100", True])
def test_money_that_is_not_an_integer_is_refused(client: TestClient, amount: object) -> None:
    org = create_org(client)
    response = client.post(f"/orgs/{org['id']}/wallets/credit/topups", json={"amount_micros": amount})
    error = assert_error(response, 400, "client", "amount_micros")
    assert error["type"] == "invalid_request_error"
    assert client.get(f"/orgs/{org['id']}/wallets/credit").json()["available_micros"] == 0


def test_request_bodies_refuse_unknown_fields_and_bad_json(client: TestClient) -> None:
    assert_error(client.post("/orgs", json={"name": "acme", "colour": "red"}), 400, "client", "colour")
    error = assert_error(
        client.post("/orgs", content=b"{not json", headers={"content-type": "application/json"}), 400, "client"
    )
    assert error["code"] == "invalid_json"
    assert_error(client.get("/orgs/x/wallets/savings"), 400, "client", "kind")


def test_unknown_paths_answer_in_the_error_shape(client: TestClient) -> None:
    assert_error(client.get("/nowhere"), 404, "client")


def test_a_new_key_is_shown_once_and_never_again(client: TestClient, services: Services) -> None:
    org = create_org(client)
    created = create_key(client, org["id"], allowed_models=["gpt-4o-mini"], budget_daily_micros=2_000_000)
    full_key = created["key"]
    assert full_key.startswith(f"{created['prefix']}-")
    assert "only time" in created["key_note"]
    assert created["allowed_models"] == ["gpt-4o-mini"]
    assert created["budget_daily_micros"] == 2_000_000
    with services.db.read() as conn:
        from glasskey.keys.service import get_key

        secret_hash = get_key(conn, created["id"]).secret_hash
    secret = full_key.rsplit("-", 1)[1]
    for response in (
        client.get(f"/keys/{created['id']}"),
        client.get(f"/keys/{created['prefix']}"),
        client.get("/keys"),
        client.get("/keys", params={"org_id": "acme"}),
    ):
        assert response.status_code == 200, response.text
        assert secret not in response.text
        assert secret_hash not in response.text
        assert "secret_hash" not in response.text
    assert client.get(f"/keys/{created['prefix']}").json()["id"] == created["id"]
    assert [k["id"] for k in client.get("/keys").json()["data"]] == [created["id"]]


def test_a_key_for_an_unknown_org_is_not_found(client: TestClient) -> None:
    assert_error(client.post("/keys", json={"org_id": "org_missing", "name": "k"}), 404, "client")


def test_patch_changes_only_the_fields_sent(client: TestClient) -> None:
    org = create_org(client)
    key = create_key(client, org["id"], allowed_models=["gpt-4o-mini"], rpm_limit=60)
    response = client.patch(
        f"/keys/{key['id']}",
        json={"settlement": "official", "budget_total_micros": 10_000_000, "expires_at": "2027-01-01T00:00:00Z"},
    )
    assert response.status_code == 200, response.text
    patched = response.json()
    assert patched["settlement"] == "official"
    assert patched["budget_total_micros"] == 10_000_000
    assert patched["expires_at"] == "2027-01-01T00:00:00+00:00"
    assert patched["allowed_models"] == ["gpt-4o-mini"]
    assert patched["rpm_limit"] == 60
    cleared = client.patch(f"/keys/{key['id']}", json={"allowed_models": None, "rpm_limit": None}).json()
    assert (cleared["allowed_models"], cleared["rpm_limit"], cleared["settlement"]) == (None, None, "official")


def test_strict_params_is_set_at_creation_changed_by_patch_and_explained(client: TestClient) -> None:
    org = create_org(client)
    key = create_key(client, org["id"], strict_params=True)
    assert key["strict_params"] is True
    assert client.get(f"/keys/{key['id']}/explain").json()["strict_params_in_words"].startswith("on: ")
    patched = client.patch(f"/keys/{key['id']}", json={"strict_params": False}).json()
    assert (patched["strict_params"], patched["settlement"]) == (False, "routed")
    assert create_key(client, org["id"])["strict_params"] is False  # off unless asked
    assert_error(client.patch(f"/keys/{key['id']}", json={"strict_params": None}), 400, "client", "strict_params")
    assert_error(client.patch(f"/keys/{key['id']}", json={"strict_params": "yes"}), 400, "client", "strict_params")


def test_patch_refuses_a_bad_policy(client: TestClient) -> None:
    org = create_org(client)
    key = create_key(client, org["id"])
    path = f"/keys/{key['id']}"
    assert_error(client.patch(path, json={"settlement": "cheap"}), 400, "client", "settlement")
    assert_error(client.patch(path, json={"budget_daily_micros": 0.5}), 400, "client", "budget_daily_micros")
    assert_error(client.patch(path, json={"budget_daily_micros": -1}), 400, "client", "budget_daily_micros")
    assert_error(client.patch(path, json={"name": None}), 400, "client", "name")
    assert_error(client.patch(path, json={"expires_at": "2027-01-01T00:00:00"}), 400, "client", "expires_at")
    assert client.get(path).json()["settlement"] == "routed"


def test_revoking_a_key_marks_it_revoked(client: TestClient) -> None:
    org = create_org(client)
    key = create_key(client, org["id"])
    revoked = client.post(f"/keys/{key['id']}/revoke")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["status"] == "revoked"
    assert revoked.json()["revoked_at"] is not None
    assert client.get(f"/keys/{key['id']}").json()["status"] == "revoked"
    assert_error(client.post("/keys/key_missing/revoke"), 404, "client")


def test_a_key_explains_itself_through_the_admin_api(client: TestClient) -> None:
    org = create_org(client)
    create_route(client)
    key = create_key(client, org["id"], allowed_models=["gpt-4o-mini"])
    response = client.get(f"/keys/{key['prefix']}/explain")
    assert response.status_code == 200, response.text
    explanation = response.json()
    assert explanation["key"]["id"] == key["id"]
    assert explanation["settlement"] == "routed"
    assert key["key"].rsplit("-", 1)[1] not in response.text
    assert CREDENTIAL not in response.text


def test_routes_never_show_their_credential(client: TestClient) -> None:
    responses = []
    route = create_route(client)
    assert route["credential"] not in (None, CREDENTIAL)
    assert route["price_per_mtok_micros"] == PRICES
    assert route["cost_per_mtok_micros"] == COSTS
    responses.append(client.get("/routes"))
    responses.append(client.get("/routes", params={"model": "gpt-4o-mini"}))
    responses.append(client.get(f"/routes/{route['id']}"))
    responses.append(client.patch(f"/routes/{route['id']}", json={"priority": 5, "enabled": False}))
    responses.append(client.patch(f"/routes/{route['id']}", json={"credential": CREDENTIAL + "-new"}))
    responses.append(client.patch(f"/routes/{route['id']}", json={"credential": CREDENTIAL, "weight": 0}))
    responses.append(client.post("/routes", json={"credential": CREDENTIAL, "provider": 7}))
    for response in responses:
        assert CREDENTIAL not in response.text
    assert [r["id"] for r in responses[0].json()["data"]] == [route["id"]]
    assert (responses[3].json()["priority"], responses[3].json()["enabled"]) == (5, False)
    assert responses[5].status_code == 400


def test_patching_route_prices_takes_all_three_in_micros(client: TestClient) -> None:
    route = create_route(client)
    cheaper = {"input": 100_000, "output": 300_000, "cached": 10_000}
    patched = client.patch(f"/routes/{route['id']}", json={"price_per_mtok_micros": cheaper}).json()
    assert patched["price_per_mtok_micros"] == cheaper
    assert patched["cost_per_mtok_micros"] == COSTS
    response = client.patch(f"/routes/{route['id']}", json={"price_per_mtok_micros": {"input": 1.5}})
    assert_error(response, 400, "client", "price_per_mtok_micros.input")


def test_a_route_for_an_unknown_model_is_refused(client: TestClient) -> None:
    response = client.post(
        "/routes",
        json={
            "model": "gpt-99",
            "provider": "simulated",
            "upstream_model": "gpt-99",
            "settlement": "routed",
            "price_per_mtok_micros": PRICES,
            "cost_per_mtok_micros": COSTS,
        },
    )
    assert_error(response, 404, "model", "model")


def test_an_operator_can_override_a_models_official_price(client: TestClient) -> None:
    listed = client.get("/models").json()
    assert "gpt-4o-mini" in [m["name"] for m in listed["data"]]
    price = {"input": 140_000, "output": 550_000, "cached": 70_000}
    response = client.put(
        "/models/gpt-4o-mini/price",
        json={"price_per_mtok_micros": price, "price_date": "2026-11-01", "price_source": "negotiated"},
    )
    assert response.status_code == 200, response.text
    model = client.get("/models/gpt-4o-mini").json()
    assert model["official_price_per_mtok_micros"] == price
    assert (model["price_overridden"], model["price_date"], model["price_source"]) == (True, "2026-11-01", "negotiated")
    assert_error(client.put("/models/gpt-99/price", json={"price_per_mtok_micros": price}), 404, "model", "model")
    assert_error(client.get("/models/gpt-99"), 404, "model", "model")


def test_receipts_start_empty(client: TestClient) -> None:
    assert client.get("/receipts").json() == {"object": "list", "data": [], "next_cursor": None, "has_more": False}
    assert client.get("/receipts", params={"status": "failed", "error_source": "upstream"}).json()["data"] == []
    assert_error(client.get("/receipts", params={"limit": 0}), 400, "client", "limit")
    assert_error(client.get("/receipts/req_missing"), 404, "client")


def test_the_ledger_audit_is_clean_after_top_ups(client: TestClient) -> None:
    org = create_org(client)
    client.post(f"/orgs/{org['id']}/wallets/credit/topups", json={"amount_micros": 3_000_000})
    report = client.get("/ledger/audit").json()
    assert report["ok"] is True
    assert report["problems"] == []
    assert report["transfers_checked"] == 1
    assert report["receipt_charges_micros"] == report["posted_charges_micros"] == 0


def test_the_openapi_document_is_served_below_the_mount(client: TestClient) -> None:
    client.headers.pop("Authorization")
    response = client.get("/openapi.json")
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["servers"] == [{"url": "/admin/api"}]
    assert document["security"] == [{"adminToken": []}]
    assert document["components"]["securitySchemes"]["adminToken"]["scheme"] == "bearer"
    assert set(document["paths"]) >= {
        "/orgs",
        "/orgs/{org_id}",
        "/orgs/{org_id}/wallets",
        "/orgs/{org_id}/wallets/{kind}",
        "/orgs/{org_id}/wallets/{kind}/topups",
        "/orgs/{org_id}/wallets/{kind}/ledger",
        "/ledger/audit",
        "/keys",
        "/keys/{key_id}",
        "/keys/{key_id}/revoke",
        "/keys/{key_id}/explain",
        "/routes",
        "/routes/{route_id}",
        "/routes/{route_id}/breaker",
        "/health",
        "/models",
        "/models/{name}",
        "/models/{name}/price",
        "/receipts",
        "/receipts/{request_id}",
    }
    for path_item in document["paths"].values():
        for operation in path_item.values():
            assert operation["summary"] and operation["description"]
            assert {"400", "401"} <= set(operation["responses"])
            assert "422" not in operation["responses"]
    topup = document["paths"]["/orgs/{org_id}/wallets/{kind}/topups"]["post"]
    assert {"200", "201", "404", "409"} <= set(topup["responses"])
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "/admin/api/openapi.json" in docs.text


def test_through_the_whole_gateway_app_a_response_has_one_request_id(services: Services) -> None:
    with TestClient(build_app(services)) as gateway:
        response = gateway.get("/admin/api/orgs")
        assert response.headers.get_list("x-request-id") == [response.json()["error"]["request_id"]]
        assert_error(response, 401, "key")
        response = gateway.get("/admin/api/orgs", headers=AUTH)
        assert response.status_code == 200
        assert len(response.headers.get_list("x-request-id")) == 1
        assert gateway.get("/admin/api/openapi.json").json()["servers"] == [{"url": "/admin/api"}]
