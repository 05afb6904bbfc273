"""The dashboard over HTTP: its session, its refusals, its forms, and figures that match the APIs."""

from __future__ import annotations

import base64
import csv
import io
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openai import OpenAI
from starlette.routing import Route

from conftest_helpers import make_settings
from dashboard.conftest import ADMIN_TOKEN, Dashboard, csrf_of
from gateway_fixtures import Gateway, ServerThread
from glasskey.app import build_app
from glasskey.dashboard import build_dashboard
from glasskey.keys.service import get_key, list_keys
from glasskey.services import build_services

PAGES = ("/", "/keys", "/keys/new", "/wallets", "/receipts", "/receipts.csv", "/failures", "/routes", "/models")
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def micros_after(html: str, anchor: str, count: int = 1) -> list[int]:
    """The ``data-micros`` of the first ``count`` amounts written after ``anchor`` on a page."""
    start = html.index(anchor)
    return [int(m) for m in re.findall(r'data-micros="(-?\d+)"', html[start:])[:count]]


def field_text(html: str, anchor: str, field: str) -> str:
    start = html.index(anchor)
    found = re.compile(rf'data-field="{field}"[^>]*>([^<]*)<').search(html, start)
    assert found, f"no {field} after {anchor}"
    return found.group(1).strip()


def make_requests(gateway: Gateway, count: int = 2) -> list[str]:
    sdk = OpenAI(base_url=gateway.v1, api_key=gateway.routed_key, max_retries=0)
    request_ids = []
    for _ in range(count):
        raw = sdk.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}], max_tokens=30
        )
        request_ids.append(raw.headers["x-request-id"])
    return request_ids


def test_every_page_sends_a_visitor_without_a_session_to_sign_in(gateway: Gateway) -> None:
    with httpx.Client(base_url=gateway.base_url) as client:
        for path in PAGES:
            response = client.get(path, params={"a": "b"})
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/signin"), path
        assert client.post("/wallets/topup", data={"amount": "5"}).status_code == 303
        assert client.get("/static/dashboard.css").status_code == 200  # the sign-in page needs it


def test_signing_in_needs_the_admin_token_and_sets_a_signed_httponly_samesite_cookie(gateway: Gateway) -> None:
    with httpx.Client(base_url=gateway.base_url) as client:
        form = client.get("/signin")
        wrong = client.post("/signin", data={"csrf_token": csrf_of(form.text), "admin_token": "guess" * 8})
        assert wrong.status_code == 401
        assert "That is not this gateway" in wrong.text
        right = client.post("/signin", data={"csrf_token": csrf_of(wrong.text), "admin_token": ADMIN_TOKEN})
    assert right.status_code == 303
    cookie = right.headers["set-cookie"]
    assert cookie.startswith("glasskey_session=")
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    payload = cookie.split("=", 1)[1].split(".", 1)[0]
    assert ADMIN_TOKEN not in base64.b64decode(payload + "==").decode()


def test_the_sign_in_form_itself_is_refused_without_its_csrf_token(gateway: Gateway) -> None:
    with httpx.Client(base_url=gateway.base_url) as client:
        client.get("/signin")
        refused = client.post("/signin", data={"admin_token": ADMIN_TOKEN})
    assert refused.status_code == 403
    assert "set-cookie" not in refused.headers or "signed_in" not in refused.headers["set-cookie"]


def test_every_form_refuses_a_missing_or_foreign_csrf_token(gateway: Gateway, dashboard: Dashboard) -> None:
    key_id = list_keys_of(gateway)[0]
    app = build_dashboard(gateway.services)
    posts = [r.path for r in app.routes if isinstance(r, Route) and "POST" in (r.methods or ())]
    assert {"/signin", "/signout", "/keys/new", "/keys/{key_id}/revoke", "/wallets/topup", "/orgs"} <= set(posts)
    fields = {"org_id": gateway.org_id, "kind": "routed", "amount": "5", "name": "x", "step": "create", "nonce": "n"}
    for path in posts:
        url = path.replace("{key_id}", key_id)
        for token in (None, "forged-token"):
            data = fields if token is None else {**fields, "csrf_token": token}
            response = dashboard.client.post(url, data=data)
            assert response.status_code == 403, (url, token)
            assert "This form was refused" in response.text
    assert len(list_keys_of(gateway)) == 2
    assert "revoked" not in dashboard.get(f"/keys/{key_id}").text
    assert dashboard.get("/keys").status_code == 200  # still signed in: sign-out was refused too


def list_keys_of(gateway: Gateway) -> list[str]:
    with gateway.services.db.read() as conn:
        return [key.id for key in list_keys(conn)]


def test_pages_carry_security_headers_and_are_never_cached(dashboard: Dashboard) -> None:
    response = dashboard.get("/keys")
    assert response.headers["cache-control"] == "no-store"
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert "cdn" not in response.text.lower() and "https://" not in response.text


KEY_FORM = {
    "org_id": "",
    "name": "batch job",
    "models_mode": "some",
    "model": "gpt-4o-mini",
    "settlement": "routed",
    "lower_cost_routes": "on",
    "budget_total": "2.50",
}


def test_a_key_is_previewed_then_created_once_and_its_secret_is_never_shown_again(
    gateway: Gateway, dashboard: Dashboard
) -> None:
    form = {**KEY_FORM, "org_id": gateway.org_id}
    preview = dashboard.post("/keys/new", {**form, "step": "preview"})
    assert preview.status_code == 200
    assert micros_after(preview.text, 'data-model="gpt-4o-mini"', 3) == [90_000, 360_000, 45_000]
    nonce = re.search(r'name="nonce" value="([^"]+)"', preview.text)
    assert nonce
    created = dashboard.post("/keys/new", {**form, "step": "create", "nonce": nonce.group(1)})
    assert created.status_code == 201
    secret = re.search(r'<code id="secret" class="secret">(gk-[^<]+)</code>', created.text)
    assert secret
    key_id = re.search(r'data-replace-url="/keys/(key_[0-9a-f]+)"', created.text)
    assert key_id
    again = dashboard.post("/keys/new", {**form, "step": "create", "nonce": nonce.group(1)})
    assert again.status_code == 409 and secret.group(1) not in again.text
    assert len(list_keys_of(gateway)) == 3
    key_page = dashboard.get(f"/keys/{key_id.group(1)}")
    assert secret.group(1) not in key_page.text
    assert micros_after(key_page.text, 'id="budget-total"') == [2_500_000]
    # The secret works, exactly as shown.
    sdk = OpenAI(base_url=gateway.v1, api_key=secret.group(1), max_retries=0)
    assert sdk.models.list().data[0].id == "gpt-4o-mini"


def test_a_key_created_with_strict_params_keeps_it_and_its_page_says_what_it_does(
    gateway: Gateway, dashboard: Dashboard
) -> None:
    form = {**KEY_FORM, "org_id": gateway.org_id, "strict_params": "on"}
    preview = dashboard.post("/keys/new", {**form, "step": "preview"})
    assert 'name="strict_params" value="on"' in preview.text  # carried to the create step
    nonce = re.search(r'name="nonce" value="([^"]+)"', preview.text)
    assert nonce
    created = dashboard.post("/keys/new", {**form, "step": "create", "nonce": nonce.group(1)})
    key_id = re.search(r'data-replace-url="/keys/(key_[0-9a-f]+)"', created.text)
    assert created.status_code == 201 and key_id
    with gateway.services.db.read() as conn:
        assert get_key(conn, key_id.group(1)).policy.strict_params is True
    page = dashboard.get(f"/keys/{key_id.group(1)}").text
    assert "strict_params on" in page and "is refused with a 400 naming it" in page


def test_the_key_form_says_what_to_fix_and_creates_nothing(gateway: Gateway, dashboard: Dashboard) -> None:
    bad = {**KEY_FORM, "org_id": gateway.org_id, "budget_total": "1e3", "expires_at": "2001-01-01T00:00"}
    response = dashboard.post("/keys/new", {**bad, "step": "preview"})
    assert response.status_code == 400
    assert "is not an amount in dollars" in response.text and "must be in the future" in response.text
    assert 'value="batch job"' in response.text  # what was typed stays
    unknown = dashboard.post("/keys/new", {**KEY_FORM, "org_id": gateway.org_id, "model": "gpt-9", "step": "preview"})
    assert unknown.status_code == 400 and "gpt-9" in unknown.text
    assert len(list_keys_of(gateway)) == 2


def test_the_same_top_up_form_sent_twice_adds_the_money_once(gateway: Gateway, dashboard: Dashboard) -> None:
    page = dashboard.get("/wallets", org=gateway.org_id, kind="credit")
    idempotency_key = re.search(r'name="idempotency_key" value="([^"]+)"', page.text)
    assert idempotency_key
    form = {"org_id": gateway.org_id, "kind": "credit", "amount": "7.25", "idempotency_key": idempotency_key.group(1)}
    for _ in range(2):
        assert dashboard.post("/wallets/topup", form).status_code == 303
    after = dashboard.get("/wallets", org=gateway.org_id, kind="credit").text
    assert micros_after(after, 'id="wallet-credit"') == [57_250_000]
    assert "already made" in after  # the second flash
    refused = dashboard.post("/wallets/topup", {**form, "amount": "-1", "idempotency_key": "other"})
    assert refused.status_code == 400 and "The top-up was not made" in refused.text


def test_receipts_filter_total_and_export_as_csv(gateway: Gateway, dashboard: Dashboard) -> None:
    request_ids = make_requests(gateway)
    page = dashboard.get("/receipts", status="succeeded", settlement="routed", model="gpt-4o-mini")
    assert field_text(page.text, 'id="totals"', "requests") == "2"
    assert all(f"/receipts/{rid}" in page.text for rid in request_ids)
    assert field_text(dashboard.get("/receipts", settlement="official").text, 'id="totals"', "requests") == "0"
    exported = dashboard.get("/receipts.csv", status="succeeded")
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert {row["request_id"] for row in rows} == set(request_ids)
    receipt = dashboard.get(f"/receipts/{request_ids[0]}")
    assert receipt.status_code == 200 and "rt-gpt-4o-mini-routed" in receipt.text
    assert dashboard.get("/receipts", since="yesterday").status_code == 400


def test_every_figure_on_the_pages_matches_the_apis(gateway: Gateway, dashboard: Dashboard) -> None:
    make_requests(gateway, 3)
    api = httpx.Client(base_url=gateway.base_url, headers=ADMIN)
    wallets = api.get(f"/admin/api/orgs/{gateway.org_id}/wallets").json()["data"]
    page = dashboard.get("/wallets", org=gateway.org_id).text
    for wallet in wallets:
        shown = micros_after(page, f'id="wallet-{wallet["kind"]}"', 4)
        assert shown == [wallet[f"{name}_micros"] for name in ("available", "posted", "held", "floor")]
    overview = dashboard.get("/").text
    for wallet in wallets:
        anchor = f'data-org="{gateway.org_id}" data-kind="{wallet["kind"]}"'
        assert micros_after(overview, anchor, 3) == [wallet[f"{n}_micros"] for n in ("available", "posted", "held")]

    explained = httpx.get(f"{gateway.v1}/key", headers={"Authorization": f"Bearer {gateway.routed_key}"}).json()
    key_id = explained["key"]["id"]
    key_page = dashboard.get(f"/keys/{key_id}").text
    for model in explained["models"]:
        prices = model["effective_price_per_mtok_micros"]
        shown = micros_after(key_page, f'data-model="{model["model"]}"', 3)
        assert shown == [prices["input"], prices["output"], prices["cached"]]
    assert micros_after(key_page, 'data-field="available"') == [explained["wallet"]["available_micros"]]

    receipts = api.get("/admin/api/receipts", params={"key_id": key_id, "limit": 200}).json()["data"]
    totals_page = dashboard.get("/receipts", key=key_id).text
    assert field_text(totals_page, 'id="totals"', "requests") == str(len(receipts))
    assert micros_after(totals_page, 'data-field="charge"') == [sum(r["charge_micros"] for r in receipts)]
    api.close()


@pytest.fixture
def empty_gateway(tmp_path) -> Iterator[Dashboard]:
    services = build_services(make_settings(tmp_path))
    with ServerThread(build_app(services)) as server:
        signed_in = Dashboard(server.base_url)
        yield signed_in
        signed_in.client.close()
    services.db.dispose()


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/", "No org yet"),
        ("/keys", "Create an org"),
        ("/keys/new", "No org yet"),
        ("/wallets", "Create an org"),
        ("/receipts", "No receipts yet"),
        ("/failures", "No failed request in this period"),
        ("/routes", "No routes yet"),
        ("/models", "no route: keys cannot call it yet"),
    ],
)
def test_an_empty_gateway_says_what_to_do_next(empty_gateway: Dashboard, path: str, says: str) -> None:
    response = empty_gateway.get(path)
    assert response.status_code == 200
    assert says in response.text


def test_an_org_made_from_the_empty_state_gets_two_empty_wallets(empty_gateway: Dashboard) -> None:
    created = empty_gateway.post("/orgs", {"name": "acme"})
    page = empty_gateway.client.get(created.headers["location"]).text
    assert "Org acme is ready" in page and page.count("This wallet is empty") == 2


def test_the_gateway_apis_still_answer_beside_the_dashboard(gateway: Gateway, dashboard: Dashboard) -> None:
    def body(response: httpx.Response) -> Any:
        assert response.headers["content-type"].startswith("application/json"), response.url
        return response.json()

    assert body(httpx.get(f"{gateway.base_url}/api"))["name"] == "glasskey"
    assert body(httpx.get(f"{gateway.base_url}/healthz")) == {"status": "ok"}
    assert body(httpx.get(f"{gateway.v1}/models"))["error"]["source"] == "key"
    assert body(httpx.get(f"{gateway.base_url}/admin/api/orgs"))["error"]["code"] == "missing_admin_token"
    assert body(httpx.get(f"{gateway.v1}/nothing-here"))["error"]["code"] is not None
    missing = dashboard.get("/nothing-here")
    assert missing.status_code == 404 and "There is no page at /nothing-here" in missing.text
    assert dashboard.get("/keys/key_missing").status_code == 404
