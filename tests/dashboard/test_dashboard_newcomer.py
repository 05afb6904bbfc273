"""What a newcomer reads on the dashboard is true: refusals look like refusals, quiet routes keep their past."""

from __future__ import annotations

import re
from typing import Any

import pytest

from dashboard.conftest import Dashboard, screenshot
from dashboard.test_dashboard_browser import sign_in
from gateway_fixtures import Gateway
from glasskey.keys.service import list_keys


@pytest.mark.parametrize("amount", ["-3", "0.0000001", "0"])
def test_a_refused_top_up_is_an_error_next_to_its_field(gateway: Gateway, dashboard: Dashboard, amount: str) -> None:
    form = {"org_id": gateway.org_id, "kind": "credit", "amount": amount, "idempotency_key": f"k{amount}"}
    refused = dashboard.post("/wallets/topup", form)
    assert refused.status_code == 400
    html = refused.text
    assert 'role="status"' not in html  # never the notice of a success
    error = re.search(r'<p class="field-error" id="topup-amount-error" role="alert">([^<]+)</p>', html)
    assert error and error.group(1).strip()
    assert f'value="{amount}"' in html  # what was typed stays, to be corrected
    assert "No money moved" in html
    page = dashboard.get("/wallets", org=gateway.org_id, kind="credit").text
    assert "The top-up was not made" not in page  # nothing left behind for the next page


def test_the_key_page_shows_a_routes_last_failure_beyond_the_health_window(
    gateway: Gateway, dashboard: Dashboard
) -> None:
    board = gateway.services.health
    for _ in range(5):
        board.record("rt-gpt-4o-mini-routed", ok=False, latency_ms=12, error_class="server_error")
    started = board.clock()
    board.clock = lambda: started + 70  # seventy seconds later: no traffic left in the window
    with gateway.services.db.read() as conn:
        key_id = next(k.id for k in list_keys(conn) if k.name == "routed")
    html = dashboard.get(f"/keys/{key_id}").text
    start = html.index('data-model="gpt-4o-mini"')
    row = html[start : html.index("</tr>", start)]
    assert "no traffic yet" not in row
    assert "last failure 70 s ago" in row and "server_error" in row


def test_a_refused_top_up_in_the_browser(gateway: Gateway, page: Any) -> None:
    sign_in(page, gateway.base_url)
    page.goto(f"{gateway.base_url}/wallets?org={gateway.org_id}&kind=credit")
    page.fill("#topup-amount", "-3")
    page.click("button:has-text('Add money')")
    error = page.locator("#topup-amount-error")
    assert error.is_visible() and error.inner_text().strip()
    assert page.locator("#topup-amount").get_attribute("aria-invalid") == "true"
    assert page.locator("[role=status]").count() == 0
    screenshot(page, "newcomer-topup-refused")


def test_a_quiet_route_that_failed_in_the_browser(gateway: Gateway, page: Any) -> None:
    board = gateway.services.health
    for _ in range(5):
        board.record("rt-gpt-4o-mini-routed", ok=False, latency_ms=12, error_class="server_error")
    started = board.clock()
    board.clock = lambda: started + 70
    with gateway.services.db.read() as conn:
        key_id = next(k.id for k in list_keys(conn) if k.name == "routed")
    sign_in(page, gateway.base_url)
    page.goto(f"{gateway.base_url}/keys/{key_id}")
    row = page.locator("tr[data-model='gpt-4o-mini']")
    assert "last failure 70 s ago: server_error" in row.inner_text()
    row.scroll_into_view_if_needed()
    screenshot(page, "newcomer-key-last-failure")


def test_the_key_form_starts_with_lower_cost_routes_off_as_the_cli_and_api_do(dashboard: Dashboard) -> None:
    form = dashboard.get("/keys/new").text
    checkbox = re.search(r'<input type="checkbox" name="lower_cost_routes"[^>]*>', form)
    assert checkbox and "checked" not in checkbox.group(0)
